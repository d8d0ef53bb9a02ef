"""Signed models on the lab's hosts: the lab publishes its models signed with its release key
(lab/publish_models.yml) and its inventory trusts that key, so every deploy of the suite checks
signatures. Here each way a signature can be wrong is pushed to the core registry, as an attacker
who can push there would, and deployed to a real host: each is refused before ONNX Runtime loads
it, the reason is in the report, and the version in service keeps serving."""

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.edgeml.fleet.plugins.module_utils import _publish
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import (
    fetch_signatures, push_signature)
from ansible_collections.edgeml.fleet.plugins.module_utils._registry import make_client

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "lab" / ".state"
HOST = "edge-a2"
REPO = "models/signing-tests"


def lab_client():
    return make_client("https://127.0.0.1:5000", "edgeml",
                       (STATE / "registry-password").read_text().strip(),
                       ca_path=str(STATE / "pki" / "ca.crt"))


def sample(name, version):
    samples = json.loads((STATE / "samples.json").read_text())
    return Path(samples[f"{name}/{version}"])


def new_key(directory, stem):
    key = ec.generate_private_key(ec.SECP256R1())
    path = Path(directory) / f"{stem}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub = path.with_suffix(".pub")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, pub


def sign_dir(directory, key):
    """A Sigstore bundle over directory's files, made by model_signing's own API."""
    import model_signing  # pylint: disable=import-outside-toplevel
    sig = Path(tempfile.mkdtemp()) / "model.sig"
    (model_signing.signing.Config().use_elliptic_key_signer(private_key=key)
     .set_hashing_config(model_signing.hashing.Config().set_ignored_paths(paths=[]))
     .sign(directory, sig))
    return sig.read_bytes()


def push(client, tag, files, variant):
    """Publish files (a directory of the lab's model files) as an artifact under REPO:tag; the
    variant annotation gives each test its own digest. Returns the subject descriptor."""
    listed = [(str(files / "model.onnx"), _publish.MODEL_TYPE),
              (str(files / "edgeml-model.json"), _publish.METADATA_TYPE)]
    manifest, blobs = _publish.artifact(listed, {"edgeml.test/variant": variant})
    for descriptor, data in blobs:
        client.push_blob(REPO, descriptor["digest"], data, descriptor["size"])
    body = _publish._canonical(manifest)  # pylint: disable=protected-access
    digest = client.put_manifest(REPO, tag, body, manifest["mediaType"])
    return {"mediaType": manifest["mediaType"], "digest": digest, "size": len(body)}


def model_dir(tmp, name, files):
    """files copied into tmp/name: a model directory as a host's store lays it out."""
    target = Path(tmp) / name
    target.mkdir(parents=True)
    for f in ("model.onnx", "edgeml-model.json"):
        (target / f).write_bytes((files / f).read_bytes())
    return target


@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    """Each bad case pushed to the core registry: {model name: (ref, reason words)}."""
    tmp = tmp_path_factory.mktemp("attacks")
    client = lab_client()
    good = sample("fraud-detector", "1.1")
    other = sample("fraud-detector", "1.0")
    stranger = new_key(tmp, "stranger")[0]
    retired, retired_pub = new_key(tmp, "retired")
    lab_key = STATE / "model-signing" / "signing_key.pem"
    cases = {}

    push(client, "unsigned", good, "unsigned")
    cases["sig-unsigned"] = (f"{REPO}:unsigned", "has no signature")

    subject = push(client, "stranger", good, "stranger")
    push_signature(client, REPO, subject, sign_dir(model_dir(tmp / "s", "sig-stranger", good), stranger))
    cases["sig-stranger"] = (f"{REPO}:stranger", "not trusted")

    subject = push(client, "revoked", good, "revoked")
    push_signature(client, REPO, subject, sign_dir(model_dir(tmp / "r", "sig-revoked", good), retired))
    cases["sig-revoked"] = (f"{REPO}:revoked", "revoked")

    # Signed by the release key, then a file changed and the image pushed again under the same
    # tag, with the release signature copied onto the new image.
    tampered(client, tmp / "t", "tampered", "sig-tampered", good, lab_key)
    cases["sig-tampered"] = (f"{REPO}:tampered", "differ from what was signed")
    tampered(client, tmp / "t2", "tampered-in-service", "fraud-detector", good, lab_key)

    # A valid release signature of another model (fraud-detector 1.0, signed under its own
    # name) attached to this image.
    of_other = sign_dir(model_dir(tmp / "o", "fraud-detector", other), lab_key)
    push_signature(client, REPO, push(client, "other", good, "other"), of_other)
    cases["sig-other"] = (f"{REPO}:other", "it signs model 'fraud-detector'")
    return {"cases": cases, "retired_pub": retired_pub.read_text()}


def tampered(client, tmp, tag, name, files, key):
    """Sign files as model name, push them, then push changed files under the same tag and
    copy the signature onto the new image."""
    signed = sign_dir(model_dir(tmp, name, files), key)
    push_signature(client, REPO, push(client, tag, files, tag), signed)
    changed = model_dir(tmp / "changed", name, files)
    (changed / "edgeml-model.json").write_bytes(
        (files / "edgeml-model.json").read_bytes().replace(b"{", b'{"note": "changed", ', 1))
    push_signature(client, REPO, push(client, tag, changed, tag), signed)


def fingerprint(pem):
    key = serialization.load_pem_public_key(pem.encode())
    import hashlib  # pylint: disable=import-outside-toplevel
    return "sha256:" + hashlib.sha256(key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def served(host, model):
    proc = subprocess.run(["docker", "exec", host, "readlink", f"/var/lib/edgeml/models/{model}/current"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def test_the_lab_publishes_signed_models():
    client = lab_client()
    _body, _type, digest = client.get_manifest("models/fraud-detector", "1.1")
    assert fetch_signatures(client, "models/fraud-detector", digest)


def test_every_bad_signature_is_refused_and_the_good_one_serves(playbook, attacks, tmp_path):
    trust = {"keys": [{"name": "lab-release",
                       "public_key": (STATE / "model-signing" / "signing_key.pub").read_text()}]}
    # Rotation: the retired key is still listed as trusted, but revoked fleet-wide.
    trust["keys"].append({"name": "retired", "public_key": attacks["retired_pub"]})
    models = [{"name": "fraud-detector", "ref": "models/fraud-detector:1.1"},
              {"name": "image-classifier", "ref": "modelcars/image-classifier:1.0"}]
    models += [{"name": name, "ref": ref} for name, (ref, _why) in attacks["cases"].items()]
    extra = {"edgeml_models": models, "edgeml_model_trust": trust, "edgeml_canary": False,
             "edgeml_model_trust_revoked": [fingerprint(attacks["retired_pub"])],
             "edgeml_report_path": str(tmp_path / "report.json"),
             "model_deploy_retry_rejected": True}  # checked again, whatever an earlier run saw
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    run = playbook("playbooks/deploy_models.yml", "--limit", HOST, "-e", f"@{tmp_path / 'extra.json'}")
    report = json.loads((tmp_path / "report.json").read_text())
    entries = {m["name"]: m for m in report["hosts"][0]["models"]}
    assert run.rc != 0  # the host fails: models did not pass
    assert not entries["fraud-detector"]["failed"], entries["fraud-detector"]
    assert "lab-release" in entries["fraud-detector"]["signer"]
    for name, (_ref, why) in attacks["cases"].items():
        entry = entries[name]
        assert entry["failed"] and entry["state"] == "refused: signature", entry
        assert why in entry["message"], entry
        assert served(HOST, name) == ""  # never activated
        # ... and never parsed by ONNX Runtime: model_verify did not run on it.
        assert not [n for n, r in run.results(HOST)
                    if n.startswith("Verify it with ONNX Runtime") and n.endswith(f": {name}")
                    and not r.get("skipped")]
        # The version itself is bad: remembered as rejected. Unsigned or signed by someone
        # unknown: not remembered, so signing it later is enough.
        listed = subprocess.run(["docker", "exec", HOST, "ls", f"/var/lib/edgeml/models/{name}"],
                                capture_output=True, text=True, check=False).stdout
        assert ("rejected" in listed) == (name not in ("sig-unsigned", "sig-stranger")), (name, listed)


def test_a_tampered_version_of_the_model_in_service_leaves_it_serving(playbook, attacks, tmp_path):
    start = playbook("playbooks/deploy_models.yml", "--limit", HOST, "-e", "edgeml_canary=false")
    assert start.rc == 0, start.failure(HOST)
    before = served(HOST, "fraud-detector")
    report_path = tmp_path / "report.json"
    run = playbook("playbooks/deploy_models.yml", "--limit", HOST, "-e", "edgeml_canary=false",
                   "-e", f"edgeml_fraud_ref={REPO}:tampered-in-service",
                   "-e", "model_deploy_retry_rejected=true",
                   "-e", f"edgeml_report_path={report_path}")
    assert run.rc != 0
    entry = next(m for m in json.loads(report_path.read_text())["hosts"][0]["models"]
                 if m["name"] == "fraud-detector")
    assert entry["state"] == "refused: signature" and "differ from what was signed" in entry["message"], entry
    assert served(HOST, "fraud-detector") == before
    assert entry["served"].endswith(before.rsplit("/", 1)[-1])
