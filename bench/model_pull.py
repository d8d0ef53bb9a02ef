"""Benchmark: pull a 512 MiB model from the lab registry with model_sync and its peers.

Same run, same registry (the lab's core registry, TLS + auth), cold destination each time:
model_sync into a fresh store, curl of each blob to disk (the transfer floor: no verification),
skopeo copy to an OCI layout, and oras (Python) pull. Then a no-op re-sync, and a pull whose
connection is cut at 50 % (bytes fetched in total vs the model size).

    make lab-up && .venv/bin/python bench/model_pull.py [--mib 512] [--runs 5]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT)]

from lab.models import read_samples  # noqa: E402
from modules import module_command, module_env, run_module  # noqa: E402
from registries import FlakyLink, big_file  # noqa: E402

STATE = ROOT / "lab" / ".state"
REGISTRY = "127.0.0.1:5000"
REPO, TAG = "bench/big-model", "1"


def timed(cmd, **kwargs):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    password = (STATE / "registry-password").read_text().strip()
    ca = str(STATE / "pki" / "ca.crt")
    auth = {"username": "edgeml", "password": password, "ca_path": ca}
    work = Path(tempfile.mkdtemp(prefix="edgeml-bench-", dir="/var/tmp"))
    try:
        model = read_samples(STATE)[("fraud-detector", "1.1")]
        weights = big_file(work / "weights.bin", args.mib << 20)
        published = run_module("model_publish", dict(
            auth, registry=f"https://{REGISTRY}", repository=REPO, tag=TAG,
            model=str(model / "model.onnx"), metadata=str(model / "edgeml-model.json"),
            extra_files=[str(weights)]))
        assert not published.get("failed"), published
        weights.unlink()
        manifest = json.loads(subprocess.run(
            ["curl", "-sf", "--cacert", ca, "-u", f"edgeml:{password}", "-H",
             "Accept: application/vnd.oci.image.manifest.v1+json",
             f"https://{REGISTRY}/v2/{REPO}/manifests/{TAG}"],
            check=True, capture_output=True).stdout)
        size = sum(layer["size"] for layer in manifest["layers"])
        certs = work / "certs"
        certs.mkdir()
        shutil.copy(ca, certs / "ca.crt")
        sync_args = dict(auth, registries=[f"https://{REGISTRY}"], name="big",
                         ref=f"{REPO}:{TAG}")

        def model_sync():
            store = work / "store"
            shutil.rmtree(store, ignore_errors=True)
            return timed(module_command("model_sync", dict(sync_args, store_dir=str(store))),
                         env=module_env())

        def curl():
            out = work / "curl"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            cmd = ["curl", "-sf", "--cacert", ca, "-u", f"edgeml:{password}"]
            for layer in manifest["layers"]:
                cmd += ["-o", str(out / layer["digest"].split(":")[1]),
                        f"https://{REGISTRY}/v2/{REPO}/blobs/{layer['digest']}"]
            return timed(cmd)

        def skopeo():
            out = work / "layout"
            shutil.rmtree(out, ignore_errors=True)
            return timed(["skopeo", "copy", "-q", "--src-creds", f"edgeml:{password}",
                          "--src-cert-dir", str(certs), f"docker://{REGISTRY}/{REPO}:{TAG}",
                          f"oci:{out}:{TAG}"])

        def oras():
            out = work / "oras"
            shutil.rmtree(out, ignore_errors=True)
            script = ("import oras.client, sys; c = oras.client.OrasClient(hostname=sys.argv[1], "
                      "tls_verify=sys.argv[2], auth_backend='basic'); "
                      "c.login(username='edgeml', password=sys.argv[3], hostname=sys.argv[1]); "
                      "c.pull(target=sys.argv[4], outdir=sys.argv[5])")
            return timed([sys.executable, "-c", script, REGISTRY, ca, password,
                          f"{REGISTRY}/{REPO}:{TAG}", str(out)])

        tools = {"model_sync": model_sync, "curl (no verify)": curl,
                 "skopeo copy": skopeo, "oras pull (py)": oras}
        times = {name: [] for name in tools}
        for _run in range(args.runs):  # interleaved
            for name, tool in tools.items():
                times[name].append(tool())

        # No-op re-sync on the populated store.
        noop_times, noop_bytes = [], []
        for _run in range(args.runs):
            result = run_module("model_sync", dict(sync_args, store_dir=str(work / "store")))
            noop_times.append(result["seconds"])
            noop_bytes.append(result["bytes_downloaded"])

        # A connection cut at 50 %, resumed with Range in the same run.
        link = FlakyLink(5000, cut_after=size // 2, cut_once=True)
        shutil.rmtree(work / "store", ignore_errors=True)
        cut = run_module("model_sync", dict(sync_args, store_dir=str(work / "store"),
                                            registries=[link.url]))
        assert not cut.get("failed"), cut
        link.close()

        curl_median = statistics.median(times["curl (no verify)"])
        print(f"Pull of a {size / (1 << 20):.0f} MiB model (3 blobs) from the lab registry "
              f"(TLS + basic auth), median of {args.runs}")
        print(f"| {'client':<17} | {'median s':>8} | {'MiB/s':>6} | {'vs curl':>7} |")
        print(f"|{'-' * 19}|{'-' * 10}|{'-' * 8}|{'-' * 9}|")
        for name, samples in times.items():
            median = statistics.median(samples)
            print(f"| {name:<17} | {median:>8.2f} | {size / (1 << 20) / median:>6.0f} | "
                  f"{median / curl_median:>6.2f}x |")
        print()
        print(f"| {'check':<36} | {'result':>22} |")
        print(f"|{'-' * 38}|{'-' * 24}|")
        print(f"| {'no-op re-sync, median s':<36} | {statistics.median(noop_times):>22.3f} |")
        print(f"| {'no-op re-sync, blob bytes':<36} | {max(noop_bytes):>22} |")
        ratio = link.bytes_to_client / size
        print(f"| {'cut at 50 %: bytes fetched / size':<36} | {ratio:>21.3f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
