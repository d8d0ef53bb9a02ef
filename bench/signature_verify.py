"""Benchmark: check a signed 512 MiB model version with model_signature and its peers.

Same run, same version (a model directory signed with model_signing's command line in key mode,
staged in a store with its signature as model_sync leaves it), warm page cache, interleaved,
median of N:
  - model_signature (run as Ansible runs a module): the signature against the store's digests,
    and its check() alone in this process (without the interpreter's start and imports);
  - sha256sum of the model file (the floor of any check that reads the bytes), and
    `openssl dgst -sha256` (OpenSSL's SHA-256, which Python's hashlib and so model_signing use);
  - model_signature with rehash=true: model_signing hashes the version directory again;
  - `model_signing verify key` (the upstream command line) on the same directory.
No lab needed.

    .venv/bin/python bench/signature_verify.py [--mib 512] [--runs 5]
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
sys.path[:0] = [str(ROOT / "tests" / "lib"), str(ROOT / ".collections")]

from ansible_collections.edgeml.fleet.plugins.module_utils._signature_check import check  # noqa: E402
from ansible_collections.edgeml.fleet.plugins.module_utils._trust import normalise  # noqa: E402
from module_process import run_module  # noqa: E402
from signing import KeyPair, make_model, sign_with_cli, stage  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512, help="size of the model file")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeml-bench-", dir="/var/tmp"))
    try:
        key = KeyPair(work, "release")
        (work / "release.pub").write_text(key.public)
        model = make_model(work / "big-model", {"edgeml-model.json": b"{}"})
        with open(model / "model.onnx", "wb") as out:
            for _mib in range(args.mib):
                out.write(os.urandom(1 << 20))
        signature = work / "model.sig"
        sign_with_cli(model, key, signature)
        store, digest = stage(work / "store", "big-model", model)
        store.save_signatures("big-model", digest, [signature.read_bytes()])
        vdir = Path(store.version_dir("big-model", digest))
        shutil.rmtree(model)
        module_args = {"name": "big-model", "digest": digest, "store_dir": str(work / "store"),
                       "trust": {"keys": [key.trust()]}}

        def ours():
            result = run_module("model_signature", module_args, work)
            assert result["verified"], result

        record = store.read_record(str(vdir))
        bundles = [data for _stem, data in store.signatures("big-model", digest)]

        def in_process():  # the check alone, without the interpreter's start and imports
            result = check(record["files"], "big-model", bundles, normalise(module_args["trust"]),
                           str(vdir))
            assert result["verified"], result

        def openssl():
            subprocess.run(["openssl", "dgst", "-sha256", str(vdir / "model.onnx")], check=True,
                           stdout=subprocess.DEVNULL)

        def ours_rehash():
            result = run_module("model_signature", dict(module_args, rehash=True), work)
            assert result["verified"], result

        def sha256sum():
            subprocess.run(["sha256sum", str(vdir / "model.onnx")], check=True,
                           stdout=subprocess.DEVNULL)

        def upstream():
            # the version record is the store's file, not the model's: as an operator would, we
            # tell the upstream verifier to leave it out
            proc = subprocess.run(
                [str(Path(sys.executable).parent / "model_signing"), "verify", "key", str(vdir),
                 "--public_key", str(work / "release.pub"), "--signature", str(signature),
                 "--ignore-paths", str(vdir / ".edgeml-version.json")],
                capture_output=True, text=True, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr

        cases = [("model_signature (store digests)", ours), ("  its check() alone", in_process),
                 ("sha256sum of the file", sha256sum), ("openssl dgst -sha256 of the file", openssl),
                 ("model_signature rehash=true", ours_rehash),
                 ("model_signing verify key (CLI)", upstream)]
        times = {name: [] for name, _fn in cases}
        for _name, fn in cases:  # warm the page cache once
            fn()
        for _round in range(args.runs):
            for name, fn in cases:
                times[name].append(timed(fn))
        floor = statistics.median(times["sha256sum of the file"])
        print(f"Check a signed model version of {args.mib} MiB (one file + metadata), warm cache, "
              f"median of {args.runs}")
        print("| check                            | median s | vs sha256sum |")
        print("|----------------------------------|----------|--------------|")
        for name, _fn in cases:
            median = statistics.median(times[name])
            print(f"| {name:32} | {median:8.4f} | {median / floor:11.3f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
