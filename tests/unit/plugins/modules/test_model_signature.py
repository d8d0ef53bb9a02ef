"""model_signature run as Ansible runs it on a host (a separate process), on versions staged in a
real store with signatures saved as model_sync saves them."""

import json
import os
import subprocess
import sys

import pytest

from module_process import ROOT, run_module
from signing import Chain, KeyPair, make_model, sign_with_certificate, sign_with_cli, stage

FILES = {"model.onnx": b"weights " * 64, "edgeml-model.json": b"{}"}


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    key, old = KeyPair(base, "release-2026"), KeyPair(base, "release-2025")
    chain = Chain(base)
    model = make_model(base / "fraud-detector", FILES)
    return {"key": key, "old": old, "chain": chain, "model": model,
            "by_key": sign_with_cli(model, key, base / "key.sig"),
            "by_old": sign_with_cli(model, old, base / "old.sig"),
            "by_cert": sign_with_certificate(model, chain, chain.leaf("ml-release@example.com"),
                                             base / "cert.sig")}


def version(tmp_path, signed, bundles):
    store, digest = stage(tmp_path / "store", "fraud-detector", signed["model"])
    store.save_signatures("fraud-detector", digest, bundles)
    return digest


def run(tmp_path, digest, trust, **extra):
    args = dict({"name": "fraud-detector", "digest": digest, "store_dir": str(tmp_path / "store"),
                 "trust": trust}, **extra)
    return run_module("model_signature", args, tmp_path)


def test_signed_version_is_verified(tmp_path, signed):
    digest = version(tmp_path, signed, [signed["by_key"]])
    result = run(tmp_path, digest, {"keys": [signed["key"].trust()]})
    assert not result.get("failed"), result
    assert result["changed"] is False and result["verified"] and result["signed"]
    assert result["policy"] == "required" and result["reason_code"] is None
    assert result["signer"].startswith("key release-2026 (sha256:")
    assert [s["outcome"] for s in result["signatures"]] == ["verified"]
    assert isinstance(result["seconds"], float)


def test_unsigned_and_required_is_refused(tmp_path, signed):
    digest = version(tmp_path, signed, [])
    result = run(tmp_path, digest, {"keys": [signed["key"].trust()]})
    assert result["failed"] and result["reason_code"] == "unsigned"
    assert result["msg"].startswith(f"model 'fraud-detector' {digest}: it has no signature")


def test_policy_optional(tmp_path, signed):
    trust = {"keys": [signed["key"].trust()], "policy": "optional"}
    digest = version(tmp_path, signed, [])
    result = run(tmp_path, digest, trust)
    assert not result.get("failed") and not result["verified"] and result["policy"] == "optional"
    # signed but not by a trusted key: refused even when optional
    (tmp_path / "store").rename(tmp_path / "old-store")
    digest = version(tmp_path, signed, [signed["by_old"]])
    result = run(tmp_path, digest, trust)
    assert result["failed"] and result["reason_code"] == "unknown-signer"


def test_policy_off_checks_nothing(tmp_path, signed):
    digest = version(tmp_path, signed, [b"garbage"])
    result = run(tmp_path, digest, {"keys": [signed["key"].trust()]}, policy="off")
    assert not result.get("failed"), result
    assert result["reason_code"] == "not-checked" and "not checked" in result["reason"]
    assert result["signed"] and not result["verified"]


def test_rotation_and_revocation(tmp_path, signed):
    digest = version(tmp_path, signed, [signed["by_old"]])
    both = {"keys": [signed["old"].trust(), signed["key"].trust()]}
    assert run(tmp_path, digest, both)["verified"]
    revoked = dict(both, revoked=[signed["old"].fingerprint])
    result = run(tmp_path, digest, revoked)
    assert result["failed"] and result["reason_code"] == "revoked"
    assert "publish it again" in result["msg"]


def test_certificate_identity(tmp_path, signed):
    digest = version(tmp_path, signed, [signed["by_cert"]])
    ok = run(tmp_path, digest, {"certificates": [signed["chain"].trust(
        identities=["ml-release@example.com"])]})
    assert ok["verified"], ok
    other = run(tmp_path, digest, {"certificates": [signed["chain"].trust(
        identities=["someone@example.com"])]})
    assert other["failed"] and other["reason_code"] == "identity"


def test_changed_file_and_rehash(tmp_path, signed):
    digest = version(tmp_path, signed, [signed["by_key"]])
    vdir = tmp_path / "store" / "fraud-detector" / "versions" / digest[7:]
    with open(vdir / "model.onnx", "r+b") as handle:
        handle.write(b"W")
    trust = {"keys": [signed["key"].trust()]}
    assert run(tmp_path, digest, trust)["verified"]  # the store's verified digests are trusted
    result = run(tmp_path, digest, trust, rehash=True)
    assert result["failed"] and result["reason_code"] == "content-mismatch"
    assert "'model.onnx' differs" in result["msg"]


def test_check_mode_and_bad_input(tmp_path, signed):
    digest = version(tmp_path, signed, [signed["by_key"]])
    result = run(tmp_path, digest, {"keys": [signed["key"].trust()]}, _ansible_check_mode=True)
    assert result["verified"] and not result["changed"]
    result = run(tmp_path, "sha256:" + "0" * 64, {"keys": [signed["key"].trust()]})
    assert result["failed"] and "is not staged" in result["msg"]
    result = run(tmp_path, "latest", {"keys": [signed["key"].trust()]})
    assert result["failed"] and "not a sha256 digest" in result["msg"]
    result = run(tmp_path, digest, {"keys": [{"name": "k", "public_key": "nope"}]})
    assert result["failed"] and "edgeml_model_trust.keys[0] (k)" in result["msg"]


def test_missing_library_names_the_venv(tmp_path, signed):
    """Run by an interpreter without model_signing (a package that cannot be imported shadows
    it), the module says which interpreter to use."""
    fake = tmp_path / "shadow" / "model_signing"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('model_signing is not installed')\n")
    digest = version(tmp_path, signed, [signed["by_key"]])
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "name": "fraud-detector", "digest": digest, "store_dir": str(tmp_path / "store"),
        "trust": {"keys": [signed["key"].trust()]}}}))
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.edgeml.fleet.plugins.modules.model_signature",
         str(args)], capture_output=True, text=True, check=False,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "shadow"),
                                                         str(ROOT / ".collections")])))
    result = json.loads(proc.stdout)
    assert result["failed"] and "/opt/edgeml/venv/bin/python" in result["msg"]
