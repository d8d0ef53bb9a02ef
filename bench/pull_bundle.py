"""Benchmark: pull mode's transport. A site's signed bundle fetched by bundle_pull, against
skopeo copying the same OCI artifact, through a counting proxy (bytes over the link).

Same run, same registry (CNCF distribution on loopback, TLS + htpasswd), a synthetic signed
bundle with one model file of --mib MiB and --wheels MiB of runtime wheels (a real site bundle
carries about 70 MiB of Ansible and ONNX Runtime wheels). Three moments of a pull-mode host's life:
first fetch (cold), a check when nothing changed, and the next bundle with a new model file
(everything else the same). skopeo has no cache between runs: each copy is whole, as a host
that fetched with it would do; its "nothing changed" check is `skopeo inspect --raw` (one
manifest GET), the cheapest question it can ask.

    .venv/bin/python bench/pull_bundle.py [--mib 16] [--wheels 64] [--runs 5]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests" / "lib"), str(ROOT),
                str(ROOT / ".collections")]

from modules import run_module  # noqa: E402
from registries import USER, FlakyLink, LocalRegistry  # noqa: E402
from synthetic_bundle import make_host_bundle, sign_bundle  # noqa: E402

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle  # noqa: E402


def bundle(path, key, model, wheels, created):
    make_host_bundle(path)
    shutil.copy(model, path / "model.onnx")
    shutil.copy(wheels, path / "wheelhouse" / "onnxruntime.whl")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["created"] = created
    (path / "manifest.json").write_text(json.dumps(manifest))
    _bundle.write_sums(path, _bundle.hash_files(path))
    sign_bundle(path, key)
    return path


def measured(registry, action):
    """(seconds, bytes to the client) of action(url) through a fresh counting proxy."""
    link = FlakyLink(registry.port)
    try:
        start = time.perf_counter()
        action(link.url)
        return time.perf_counter() - start, link.bytes_to_client
    finally:
        link.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--wheels", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeml-bench-", dir="/var/tmp"))
    (work / "registry").mkdir()
    registry = LocalRegistry(work / "registry")
    try:
        key = work / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)],
                       check=True)
        signers = work / "allowed_signers"
        signers.write_text("bench@edgeml " + (work / "key.pub").read_text())
        certs = work / "certs"
        certs.mkdir()
        shutil.copy(registry.ca, certs / "ca.crt")
        models = []
        for n in (1, 2):
            models.append(work / f"model{n}.bin")
            models[-1].write_bytes(os.urandom(args.mib << 20))
        wheels = work / "wheels.bin"
        wheels.write_bytes(os.urandom(args.wheels << 20))
        versions = [bundle(work / f"v{n}", key, models[n - 1], wheels, f"2026-11-27T00:00:0{n}Z")
                    for n in (1, 2)]

        def push(version):
            result = run_module("bundle_push", registry.args(registry=registry.url, repository="bundles/bench",
                                                             path=str(version)))
            assert not result.get("failed"), result

        def edgeml_pull(dest):
            def action(url):
                result = run_module("bundle_pull", registry.args(
                    registry=url, repository="bundles/bench", dest=str(dest), host="edge-c1",
                    allowed_signers=str(signers)))
                assert not result.get("failed"), result
            return action

        def skopeo_copy(out):
            def action(url):
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run(["skopeo", "copy", "--quiet", "--src-cert-dir", str(certs),
                                "--src-creds", f"{USER}:{registry.password}",
                                f"docker://{url[len('https://'):]}/bundles/bench:latest", f"dir:{out}"],
                               check=True, stdout=subprocess.DEVNULL)
            return action

        def skopeo_check(url):
            subprocess.run(["skopeo", "inspect", "--raw", "--cert-dir", str(certs),
                            "--creds", f"{USER}:{registry.password}",
                            f"docker://{url[len('https://'):]}/bundles/bench:latest"],
                           check=True, stdout=subprocess.DEVNULL)

        rows = {}
        for run in range(args.runs):
            host = work / f"host{run}"
            host.mkdir(mode=0o750)
            push(versions[0])
            for name, action in (("first fetch (cold)", None), ("nothing changed", None)):
                rows.setdefault(name, []).append((
                    measured(registry, edgeml_pull(host / "bundle")),
                    measured(registry, skopeo_copy(work / "skopeo") if name.startswith("first")
                             else skopeo_check)))
            push(versions[1])
            rows.setdefault("next bundle (new model)", []).append((
                measured(registry, edgeml_pull(host / "bundle")),
                measured(registry, skopeo_copy(work / "skopeo"))))
            shutil.rmtree(host)
        size = sum(p.stat().st_size for p in versions[1].rglob("*") if p.is_file())
        print(f"bundle: {size / 2**20:.1f} MiB ({args.mib} MiB model, {args.wheels} MiB wheels), "
              f"{args.runs} runs, medians; "
              "bytes: what crossed the link to the host (TLS included)\n")
        print("| moment | bundle_pull s | bundle_pull MiB | skopeo s | skopeo MiB | bytes ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, samples in rows.items():
            ours_s = statistics.median(s[0][0] for s in samples)
            ours_b = statistics.median(s[0][1] for s in samples)
            peer_s = statistics.median(s[1][0] for s in samples)
            peer_b = statistics.median(s[1][1] for s in samples)
            print(f"| {name} | {ours_s:.2f} | {ours_b / 2**20:.2f} | {peer_s:.2f} | {peer_b / 2**20:.2f} "
                  f"| {ours_b / peer_b:.2f} |")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
