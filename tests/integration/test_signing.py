"""Signing on the controller against a real registry (CNCF distribution 2.8 on loopback, no
referrers API): model_publish and model_sign run as real processes, signatures found again with
fetch_signatures, and interop both ways with the upstream `model_signing` command line."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import model_signing.verifying

from modules import run_module
from signing_keys import cert_chain, ec_key
from ansible_collections.edgeml.fleet.plugins.module_utils import _model_signing, _registry
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import fetch_signatures

CLI = str(Path(sys.executable).with_name("model_signing"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return {"release": ec_key(directory, "release", password="release pass"),
            "ci": ec_key(directory, "ci"),
            "pki": cert_chain(directory)}


@pytest.fixture
def client(registry):
    return _registry.RegistryClient(registry.url, "tester", registry.password, ca_path=registry.ca)


def model_files(directory, seed):
    """A small model (its bytes differ per seed): {title: path}."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": os.urandom(2000) + seed.encode(),
             "edgeml-model.json": json.dumps({"name": seed}).encode()}
    for title, data in files.items():
        (directory / title).write_bytes(data)
    return {title: directory / title for title in files}


def digests(files):
    return {t: "sha256:" + hashlib.sha256(Path(p).read_bytes()).hexdigest() for t, p in files.items()}


def publish(registry, repo, tag, files, check=False, **extra):
    return run_module("model_publish", registry.args(
        registry=registry.url, repository=repo, tag=tag, model=str(files["model.onnx"]),
        metadata=str(files["edgeml-model.json"]), **extra), check_mode=check, diff=True)


def sign(registry, ref, check=False, **extra):
    return run_module("model_sign", registry.args(registry=registry.url, ref=ref, **extra),
                      check_mode=check, diff=True)


def download_artifact(client, repo, digest, directory):
    """The artifact's files, by layer title, fetched with plain registry calls."""
    body, _media_type, _digest = client.get_manifest(repo, digest)
    directory.mkdir(parents=True)
    for layer in json.loads(body)["layers"]:
        resp, _status = client.open_blob(repo, layer["digest"])
        (directory / layer["annotations"]["org.opencontainers.image.title"]).write_bytes(resp.read())
        resp.close()
    return directory


def cli(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, check=False)


def test_publish_signs_and_the_upstream_cli_verifies(registry, client, keys, tmp_path):
    key, pub = keys["release"]
    files = model_files(tmp_path / "build", "publish")
    signing = {"signing_key": str(key), "signing_key_password": "release pass"}
    check = publish(registry, "models/signed", "1.0", files, check=True, **signing)
    assert check["changed"] and check["signature"]["referrer"] is None, check
    first = publish(registry, "models/signed", "1.0", files, **signing)
    assert first["changed"] and not first.get("failed"), first
    hint = hashlib.sha256(pub.read_bytes()).hexdigest()
    assert first["signature"]["signer"] == f"sha256:{hint}"
    assert first["diff"]["after"]["signers"] == [f"sha256:{hint}"]
    assert "release pass" not in json.dumps(first) and "PRIVATE" not in json.dumps(first)
    [bundle] = fetch_signatures(client, "models/signed", first["digest"])
    assert _model_signing.statement(bundle) == ("signed", digests(files))
    signature = tmp_path / "signed.sig"
    signature.write_bytes(bundle)
    directory = download_artifact(client, "models/signed", first["digest"], tmp_path / "dl" / "signed")
    verified = cli("verify", "key", "--signature", signature, "--public_key", pub, directory)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Idempotent: the tag points at the image and the signer's signature is attached.
    again = publish(registry, "models/signed", "1.0", files, **signing)
    assert not again["changed"] and again["pushed_bytes"] == 0, again
    assert again["signature"] == first["signature"]
    assert fetch_signatures(client, "models/signed", first["digest"]) == [bundle]
    # Tampered files fail the upstream verification.
    (directory / "model.onnx").write_bytes(b"tampered")
    assert cli("verify", "key", "--signature", signature, "--public_key", pub, directory).returncode != 0


def test_a_tag_already_pointing_at_the_image_gets_signed(registry, client, keys, tmp_path):
    files = model_files(tmp_path / "build", "late")
    plain = publish(registry, "models/late", "1.0", files)
    assert plain["changed"] and "signature" not in plain
    signed = publish(registry, "models/late", "1.0", files, signing_key=str(keys["ci"][0]))
    assert signed["changed"] and signed["digest"] == plain["digest"] and signed["signature"]["referrer"]
    assert len(fetch_signatures(client, "models/late", plain["digest"])) == 1


def test_cli_signature_is_attached_by_model_sign(registry, client, keys, tmp_path):
    key, pub = keys["ci"]
    files = model_files(tmp_path / "fraud", "cli")
    published = publish(registry, "models/fraud", "2.0", files)
    signature = tmp_path / "fraud.sig"
    made = cli("sign", "key", "--private_key", key, "--signature", signature, tmp_path / "fraud")
    assert made.returncode == 0, made.stdout + made.stderr
    check = sign(registry, "models/fraud:2.0", check=True, signature=str(signature))
    assert check["changed"] and not fetch_signatures(client, "models/fraud", published["digest"])
    first = sign(registry, "models/fraud:2.0", signature=str(signature))
    assert first["changed"] and first["digest"] == published["digest"], first
    assert first["signature"]["signer"] == "sha256:" + hashlib.sha256(pub.read_bytes()).hexdigest()
    assert fetch_signatures(client, "models/fraud", published["digest"]) == [signature.read_bytes()]
    again = sign(registry, f"models/fraud@{published['digest']}", signature=str(signature))
    assert not again["changed"] and again["signature"] == first["signature"], again
    # The same key signing the same files through model_sign: already signed, nothing attached.
    same = sign(registry, "models/fraud:2.0", name="fraud", signing_key=str(key))
    assert not same["changed"], same
    assert len(fetch_signatures(client, "models/fraud", published["digest"])) == 1


def test_a_signature_for_other_content_is_refused(registry, client, keys, tmp_path):
    files = model_files(tmp_path / "build", "refused")
    published = publish(registry, "models/refused", "1.0", files)
    other = model_files(tmp_path / "refused", "other content")
    signature = tmp_path / "other.sig"
    assert cli("sign", "key", "--private_key", keys["ci"][0], "--signature", signature,
               tmp_path / "refused").returncode == 0
    refused = sign(registry, "models/refused:1.0", signature=str(signature))
    assert refused["failed"] and "this signature is for other content" in refused["msg"], refused
    assert "signed with other content: 'edgeml-model.json', 'model.onnx'" in refused["msg"]
    (other["edgeml-model.json"]).unlink()
    junk = tmp_path / "junk.sig"
    junk.write_bytes(b'{"mediaType": "x"}')
    refused = sign(registry, "models/refused:1.0", signature=str(junk))
    assert refused["failed"] and "names no signer" in refused["msg"], refused
    assert fetch_signatures(client, "models/refused", published["digest"]) == []


@pytest.mark.parametrize("shape, platforms", [("artifact", ["linux/amd64"]),
                                              ("modelcar", ["linux/amd64"]),
                                              ("modelcar", ["linux/amd64", "linux/arm64/v8"])])
def test_model_sign_with_a_key_on_an_unsigned_image(registry, client, keys, tmp_path, shape, platforms):
    key, pub = keys["release"]
    repo = f"{shape}s/unsigned-{len(platforms)}"
    files = model_files(tmp_path / "build", f"{shape}{platforms}")
    published = publish(registry, repo, "1.0", files, shape=shape, platforms=platforms)
    args = {"signing_key": str(key), "signing_key_password": "release pass", "name": "fraud"}
    check = sign(registry, f"{repo}:1.0", check=True, **args)
    assert check["changed"] and check["shape"] == shape, check
    assert fetch_signatures(client, repo, published["digest"]) == []
    first = sign(registry, f"{repo}:1.0", **args)
    assert first["changed"] and first["signature"]["referrer"], first
    [bundle] = fetch_signatures(client, repo, published["digest"])
    assert _model_signing.statement(bundle) == ("fraud", digests(files))
    directory = tmp_path / "verify" / "fraud"
    directory.mkdir(parents=True)
    for title, path in files.items():
        (directory / title).write_bytes(path.read_bytes())
    signature = tmp_path / "fraud.sig"
    signature.write_bytes(bundle)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(directory, signature)
    again = sign(registry, f"{repo}:1.0", **args)
    assert not again["changed"] and again["pushed_bytes"] == 0 and again["signature"] == first["signature"]
    assert again["diff"]["before"] == again["diff"]["after"]
    assert fetch_signatures(client, repo, published["digest"]) == [bundle]


def test_certificate_mode_with_a_chain(registry, client, keys, tmp_path):
    pki = keys["pki"]
    files = model_files(tmp_path / "build", "certificate")
    args = {"signing_key": str(pki["key"]), "signing_certificate": str(pki["certificate"]),
            "signing_chain": [str(pki["intermediate"])]}
    first = publish(registry, "models/certified", "1.0", files, **args)
    assert first["changed"] and first["signature"]["signer"] == "CN=ML release signing", first
    [bundle] = fetch_signatures(client, "models/certified", first["digest"])
    signature = tmp_path / "certified.sig"
    signature.write_bytes(bundle)
    directory = download_artifact(client, "models/certified", first["digest"], tmp_path / "dl" / "certified")
    verified = cli("verify", "certificate", "--signature", signature, "--certificate_chain", pki["ca"], directory)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert not publish(registry, "models/certified", "1.0", files, **args)["changed"]
    again = sign(registry, "models/certified:1.0", name="certified", **args)
    assert not again["changed"], again
    # A wrong chain is model_signing's business on the hosts; a key that is not the
    # certificate's is refused here, before anything is pushed.
    wrong = publish(registry, "models/certified", "1.1", files, signing_key=str(keys["ci"][0]),
                    signing_certificate=str(pki["certificate"]))
    assert wrong["failed"] and "is not the certificate of signing_key" in wrong["msg"], wrong
    with pytest.raises(Exception):
        client.get_manifest("models/certified", "1.1")


def test_options_are_checked(registry, keys, tmp_path):
    both = sign(registry, "models/x:1", signing_key=str(keys["ci"][0]), signature=str(tmp_path / "s"))
    assert both["failed"] and "mutually exclusive" in both["msg"]
    neither = sign(registry, "models/x:1")
    assert neither["failed"] and "one of the following is required" in neither["msg"]
    bad = publish(registry, "models/x", "1", model_files(tmp_path / "b", "x"),
                  signing_key=str(keys["release"][0]), signing_key_password="not-the-password")
    assert bad["failed"] and "wrong signing_key_password" in bad["msg"], bad
    assert "not-the-password" not in json.dumps(bad) and "changed" not in bad or not bad["changed"]


def _push(client, repo, tag, layers, config=b"{}"):
    """Push an image of layers [(bytes, media type, annotations)]; returns its digest."""
    def blob(data, media_type, annotations=None):
        descriptor = {"mediaType": media_type, "size": len(data),
                      "digest": "sha256:" + hashlib.sha256(data).hexdigest()}
        if annotations:
            descriptor["annotations"] = annotations
        client.push_blob(repo, descriptor["digest"], data, len(data))
        return descriptor
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": blob(config, "application/vnd.oci.image.config.v1+json"),
                "layers": [blob(*layer) for layer in layers]}
    body = json.dumps(manifest).encode()
    client.put_manifest(repo, tag, body, manifest["mediaType"])
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _tar(members):
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize("layers, expected", [
    ([(b"x", "application/octet-stream", {"org.opencontainers.image.title": "../escape"})],
     "a file name must be one name"),
    ([(b"x", "application/octet-stream", {"org.opencontainers.image.title": "a"}),
      (b"y", "application/octet-stream", {"org.opencontainers.image.title": "a"})],
     "two files of one name"),
    ([(_tar([("models/model.onnx", b"m", None), ("models/alias", None, "model.onnx")]),
       "application/vnd.oci.image.layer.v1.tar", None)], "holds symlinks under the model's path"),
    ([(_tar([("models/../../etc/passwd", b"m", None)]), "application/vnd.oci.image.layer.v1.tar", None)],
     "climbs out"),
])
def test_hostile_images_are_not_signed(registry, client, keys, tmp_path, monkeypatch, layers, expected):
    repo = "hostile/model"
    digest = _push(client, repo, "1", layers)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    result = sign(registry, f"{repo}@{digest}", signing_key=str(keys["ci"][0]))
    assert result["failed"] and expected in result["msg"], result
    assert fetch_signatures(client, repo, digest) == []
    assert sorted(os.listdir(tmp_path)) == [], "model_sign left files behind"
    assert not Path("/etc/passwd").read_bytes().startswith(b"m")
