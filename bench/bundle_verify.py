"""Benchmark: verify an offline bundle with bundle_verify and by hand with the peer tools.

Same run, same bundle (a synthetic one: an OCI layout of model blobs and a wheel archive,
sealed and signed as bundle_seal does), warm page cache, interleaved, median of N:
  - bundle_verify (run as Ansible runs a module): signature, every checksum, the OCI layout;
  - by hand, as docs/offline.md shows: `ssh-keygen -Y verify` + `sha256sum --strict -c`;
  - a chunk set: bundle_verify checking and reassembling the chunks, then verifying, against
    `sha256sum -c` of the chunks + `cat | tar -x` + `sha256sum -c` of the bundle.
No lab needed.

    .venv/bin/python bench/bundle_verify.py [--mib 512] [--runs 5]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests" / "lib"),
                str(ROOT / ".collections")]

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle  # noqa: E402
from modules import run_module  # noqa: E402
from synthetic_bundle import make_bundle, run_command  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512, help="model bytes in the bundle")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeml-bench-", dir="/var/tmp"))
    try:
        key = work / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        allowed = work / "allowed_signers"
        allowed.write_text("bench@edgeml " + key.with_suffix(".pub").read_text())
        bundle = work / "bundle"
        make_bundle(bundle, [os.urandom(args.mib << 20 >> 3) for _number in range(8)],
                    os.urandom(50 << 20), ref="m:1")
        _bundle.sign(run_command, bundle, key)
        chunks = work / "chunks"
        _bundle.split(bundle, chunks, 64 << 20)
        _bundle.sign(run_command, chunks, key, _bundle.CHUNKS)  # the chunk list is signed too
        size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / (1 << 20)

        def module_dir():
            result = run_module("bundle_verify", {"path": str(bundle), "allowed_signers": str(allowed)})
            assert not result.get("failed"), result

        def by_hand_dir():
            sig = bundle / "SHA256SUMS.sig"
            with open(bundle / "SHA256SUMS", "rb") as sums:
                subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "bench@edgeml",
                                "-n", "edgeml-bundle", "-s", str(sig)], stdin=sums, check=True,
                               stdout=subprocess.DEVNULL)
            subprocess.run(["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"], cwd=bundle,
                           check=True)

        def module_chunks():
            shutil.rmtree(work / "joined", ignore_errors=True)
            result = run_module("bundle_verify", {"path": str(chunks), "dest": str(work / "joined"),
                                                  "allowed_signers": str(allowed)})
            assert not result.get("failed") and result["changed"], result

        def by_hand_chunks():
            shutil.rmtree(work / "untarred", ignore_errors=True)
            (work / "untarred").mkdir()
            subprocess.run(["sha256sum", "--quiet", "--strict", "-c", "CHUNKS.SHA256"], cwd=chunks,
                           check=True)
            subprocess.run(f"cat {chunks}/bundle.tar.* | tar -x -C {work}/untarred", shell=True,
                           check=True)
            subprocess.run(["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"],
                           cwd=work / "untarred", check=True)

        cases = [("bundle_verify, directory", module_dir), ("ssh-keygen + sha256sum -c", by_hand_dir),
                 ("bundle_verify, chunk set", module_chunks),
                 ("sha256sum + cat|tar + sha256sum", by_hand_chunks)]
        times = {name: [] for name, _fn in cases}
        for name, fn in cases:  # warm the page cache once
            fn()
        for _round in range(args.runs):
            for name, fn in cases:
                times[name].append(timed(fn))
        print(f"Verify a signed bundle of {size:.0f} MiB (8 model blobs, a 50 MiB wheel archive), "
              f"warm cache, median of {args.runs}")
        print("| check                            | median s |  MiB/s | vs by hand |")
        print("|----------------------------------|----------|--------|------------|")
        for index, (name, _fn) in enumerate(cases):
            median = statistics.median(times[name])
            peer = statistics.median(times[cases[index - index % 2 + 1][0]])
            print(f"| {name:32} | {median:8.2f} | {size / median:6.0f} | {median / peer:9.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
