"""Benchmark: what checking signatures adds to a full model_deploy on a lab host.

Same run, same host (edge-a2), same model: fraud-detector 1.1 plus a data file of --mib MiB,
published each time under a new digest (an annotation differs), so every deploy stages,
verifies, activates and health-gates a new version. "signed": the version is signed with the
lab's release key and the host checks it (policy required, the lab's default). "unchecked": the
same, with model_deploy_signature_policy=off. Runs alternate so drift hits both alike.

    make lab-up && .venv/bin/python bench/signed_deploy.py [--mib 64] [--runs 3]
"""

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests" / "lib"), str(ROOT),
                str(ROOT / ".collections")]

from ansible_collections.edgeml.fleet.plugins.module_utils import _publish  # noqa: E402
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import push_signature  # noqa: E402
from ansible_collections.edgeml.fleet.plugins.module_utils._registry import make_client  # noqa: E402
from lab.models import read_samples  # noqa: E402
from registries import big_file  # noqa: E402

STATE = ROOT / "lab" / ".state"
HOST = "edge-a2"
REPO = "bench/signed-deploy"


def publish(client, files, signed):
    """Push files as a new image (a fresh annotation: a new digest); sign it when asked."""
    listed = [(str(files["model.onnx"]), _publish.MODEL_TYPE),
              (str(files["edgeml-model.json"]), _publish.METADATA_TYPE),
              (str(files["weights.bin"]), _publish.DATA_TYPE)]
    tag = "run-" + secrets.token_hex(4)
    manifest, blobs = _publish.artifact(listed, {"edgeml.bench/run": tag})
    for descriptor, data in blobs:
        client.push_blob(REPO, descriptor["digest"], data, descriptor["size"])
    body = _publish._canonical(manifest)  # pylint: disable=protected-access
    digest = client.put_manifest(REPO, tag, body, manifest["mediaType"])
    if signed:
        import model_signing  # pylint: disable=import-outside-toplevel
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "fraud-detector"
            model.mkdir()
            for name, path in files.items():
                os.link(path, model / name)
            sig = Path(tmp) / "model.sig"
            (model_signing.signing.Config()
             .use_elliptic_key_signer(private_key=STATE / "model-signing" / "signing_key.pem")
             .sign(model, sig))
            push_signature(client, REPO, {"mediaType": manifest["mediaType"], "digest": digest,
                                          "size": len(body)}, sig.read_bytes())
    return f"{REPO}:{tag}"


def deploy(ref, policy):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               EDGEML_LAB_STATE=str(STATE))
    args = [str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/deploy_models.yml", "--limit", HOST,
            "-e", "edgeml_canary=false", "-e", f"edgeml_fraud_ref={ref}"]
    if policy:
        args += ["-e", f"model_deploy_signature_policy={policy}"]
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"deploy of {ref} failed:\n{proc.stdout[-3000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    client = make_client("https://127.0.0.1:5000", "edgeml",
                         (STATE / "registry-password").read_text().strip(),
                         ca_path=str(STATE / "pki" / "ca.crt"))
    sample = read_samples(STATE)[("fraud-detector", "1.1")]
    with tempfile.TemporaryDirectory(prefix="edgeml-bench-", dir="/var/tmp") as work:
        files = {"model.onnx": Path(sample) / "model.onnx",
                 "edgeml-model.json": Path(sample) / "edgeml-model.json",
                 "weights.bin": big_file(Path(work) / "weights.bin", args.mib << 20)}
        times = {"signed": [], "unchecked": []}
        for _run in range(args.runs):
            times["signed"].append(deploy(publish(client, files, True), ""))
            times["unchecked"].append(deploy(publish(client, files, False), "off"))
    deploy("models/fraud-detector:1.0", "")  # leave the lab as the tests expect it
    base = statistics.median(times["unchecked"])
    print(f"\nmodel_deploy of a new {args.mib} MiB version on {HOST}, median of {args.runs}\n")
    print("| deploy | median s | vs unchecked |")
    print("|---|---:|---:|")
    for name in ("unchecked", "signed"):
        median = statistics.median(times[name])
        print(f"| {name} | {median:.2f} | {median / base:.2f}x |")
    print(json.dumps(times))


if __name__ == "__main__":
    main()
