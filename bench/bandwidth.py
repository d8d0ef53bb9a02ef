"""Benchmark: model_sync's bandwidth cap and per-site pull slots, on a loopback or the lab's registry.

A LocalRegistry (CNCF distribution, TLS + htpasswd) on 127.0.0.1 serves one image with a
~48 MiB layer; with --lab, the lab's core registry does (make lab-up first). model_sync (a real module process, cold store each run) pulls it at several caps
and uncapped; curl --limit-rate at the same cap is the peer. Then six local hosts through
ansible-playbook with max_parallel_pulls 2 and no mirror: the peak number of overlapping pulls.

    .venv/bin/python bench/bandwidth.py [--lab] [--mib 48] [--runs 3] [--caps 2,8,32]
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
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT), str(ROOT / ".collections")]

from lab.models import read_samples  # noqa: E402
from modules import run_module  # noqa: E402
from registries import USER, LocalRegistry, big_file  # noqa: E402
from test_link_limits import peak_overlap, run_sync  # noqa: E402
from lab.topology import CONTROLLER_REGISTRY, REGISTRY_USER  # noqa: E402

STATE = ROOT / "lab" / ".state"
REPO, TAG = "bench/link-model", "1"
MIB = 1 << 20


class LabRegistry:
    """The lab's core registry (a container, published on loopback), as LocalRegistry offers it."""

    user = REGISTRY_USER

    def __init__(self):
        self.url = f"https://{CONTROLLER_REGISTRY}"
        self.ca = str(STATE / "pki" / "ca.crt")
        self.password = (STATE / "registry-password").read_text().strip()

    def args(self, **extra):
        return dict({"username": self.user, "password": self.password, "ca_path": self.ca}, **extra)

    def stop(self):
        """The lab's registry outlives the benchmark."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--caps", default="2,8,32", help="MiB/s, comma-separated")
    parser.add_argument("--hosts-cap", type=int, default=8, help="MiB/s per host in the slot run")
    parser.add_argument("--lab", action="store_true", help="the lab's core registry (make lab-up)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeml-bench-", dir="/var/tmp"))
    (work / "registry").mkdir()
    registry = LabRegistry() if args.lab else LocalRegistry(work / "registry")
    user = getattr(registry, "user", USER)
    where = "the lab's core registry (a container; TLS + basic auth)" if args.lab else \
        "a loopback registry (TLS + basic auth)"
    try:
        model = read_samples(STATE)[("fraud-detector", "1.1")]
        weights = big_file(work / "weights.bin", args.mib * MIB)
        published = run_module("model_publish", registry.args(
            registry=registry.url, repository=REPO, tag=TAG, model=str(model / "model.onnx"),
            metadata=str(model / "edgeml-model.json"), extra_files=[str(weights)]))
        assert not published.get("failed"), published
        weights.unlink()
        manifest = json.loads(subprocess.run(
            ["curl", "-sf", "--cacert", registry.ca, "-u", f"{user}:{registry.password}", "-H",
             "Accept: application/vnd.oci.image.manifest.v1+json",
             f"{registry.url}/v2/{REPO}/manifests/{TAG}"], check=True, capture_output=True).stdout)
        big = max(manifest["layers"], key=lambda layer: layer["size"])

        def model_sync(cap):
            store = work / "store"
            shutil.rmtree(store, ignore_errors=True)
            result = run_module("model_sync", registry.args(
                registries=[registry.url], store_dir=str(store), name="big", ref=f"{REPO}:{TAG}",
                signatures=False, max_bytes_per_second=cap))
            assert not result.get("failed"), result
            return result["bytes_per_second"]

        def curl(cap):
            out = work / "curl.bin"
            cmd = ["curl", "-sf", "--cacert", registry.ca, "-u", f"{user}:{registry.password}",
                   "-o", str(out), f"{registry.url}/v2/{REPO}/blobs/{big['digest']}"]
            if cap:
                cmd[1:1] = ["--limit-rate", str(cap)]
            start = time.perf_counter()
            subprocess.run(cmd, check=True)
            rate = out.stat().st_size / (time.perf_counter() - start)
            out.unlink()
            return rate

        caps = [int(c) * MIB for c in args.caps.split(",")] + [0]
        rows = []
        for cap in caps:
            ours = statistics.median(model_sync(cap) for _run in range(args.runs))
            peer = statistics.median(curl(cap) for _run in range(args.runs))
            rows.append((cap, ours, peer))

        print(f"model_sync of a {args.mib} MiB layer from {where}, "
              f"cold store, median of {args.runs}; peer: curl --limit-rate, the same blob")
        print(f"| {'cap MiB/s':>9} | {'model_sync MiB/s':>16} | {'ratio to cap':>12} | "
              f"{'within 10 %':>11} | {'curl MiB/s':>10} |")
        print(f"|{'-' * 11}|{'-' * 18}|{'-' * 14}|{'-' * 13}|{'-' * 12}|")
        for cap, ours, peer in rows:
            ratio = f"{ours / cap:.3f}" if cap else "-"
            within = ("yes" if abs(ours / cap - 1) <= 0.10 else "no") if cap else "-"
            peer_text = f"{peer / MIB:.1f}" if peer else "-"
            print(f"| {cap // MIB if cap else 'none':>9} | {ours / MIB:>16.1f} | {ratio:>12} | "
                  f"{within:>11} | {peer_text:>10} |")

        if args.lab:  # the slots are the controller's: the loopback run measures them
            return 0
        slots = work / "slots"
        slots.mkdir()
        started = time.perf_counter()
        results = run_sync(registry, slots, published["digest"], "core",
                           cap=args.hosts_cap * MIB, ref=f"{REPO}:{TAG}")
        wall = time.perf_counter() - started
        print()
        print(f"Six local hosts (ansible-playbook, forks 6), no site mirror, "
              f"max_parallel_pulls 2, cap {args.hosts_cap} MiB/s per host")
        print(f"| {'check':<34} | {'result':>10} |")
        print(f"|{'-' * 36}|{'-' * 12}|")
        print(f"| {'peak overlapping pulls':<34} | {peak_overlap(results):>10} |")
        print(f"| {'median rate per host, MiB/s':<34} | "
              f"{statistics.median(r['bytes_per_second'] for r in results) / MIB:>10.1f} |")
        print(f"| {'longest wait for a slot, s':<34} | "
              f"{max(r['pull_slot']['waited'] for r in results):>10.1f} |")
        print(f"| {'wall time, s':<34} | {wall:>10.1f} |")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
