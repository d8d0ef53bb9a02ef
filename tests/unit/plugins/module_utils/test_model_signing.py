"""Signing on the controller (_model_signing): model_signing's public API signs the files under
the names a host's store gives them, and its public verifying API accepts the result; the
signer and statement of a bundle are read back, hostile bundles only ever raise SigningError."""

import base64
import hashlib
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

import model_signing.verifying

from ansible_collections.edgeml.fleet.plugins.module_utils import _model_signing as ms
from ansible_collections.edgeml.fleet.plugins.module_utils._model_signing import SigningError, Signer
from signing_keys import cert_chain, ec_key

EXAMPLES = int(os.environ.get("EDGEML_HYPOTHESIS_EXAMPLES", "200"))


def model(tmp_path, name="fraud-detector", files=None):
    """A model directory named after the model; returns (directory, {title: digest})."""
    files = files or {"model.onnx": os.urandom(3000), "edgeml-model.json": b'{"golden": []}'}
    directory = tmp_path / "work" / name
    directory.mkdir(parents=True)
    for title, data in files.items():
        (directory / title).write_bytes(data)
    return directory, {t: "sha256:" + hashlib.sha256(d).hexdigest() for t, d in files.items()}


def write(tmp_path, bundle):
    path = tmp_path / "model.sig"
    path.write_bytes(bundle)
    return path


def test_key_mode_signs_what_model_signing_verifies(tmp_path):
    key, pub = ec_key(tmp_path, password="s3cret pass")
    directory, files = model(tmp_path)
    signer = Signer(str(key), "s3cret pass")
    bundle = signer.sign(str(directory), files)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
        directory, write(tmp_path, bundle))
    assert ms.statement(bundle) == ("fraud-detector", files)  # names: the layer titles
    hint = hashlib.sha256(pub.read_bytes()).hexdigest()
    assert ms.describe_signer(bundle) == signer.signer == f"sha256:{hint}"
    assert b"PRIVATE" not in bundle and b"s3cret" not in bundle
    # ECDSA signatures differ every time: the same signer and statement are still recognised.
    again = signer.sign(str(directory), files)
    assert again != bundle and ms.same_signature(again, bundle)
    assert signer.signed(bundle, "fraud-detector", files)
    assert not signer.signed(bundle, "other-name", files)
    assert not signer.signed(bundle, "fraud-detector", dict(files, extra="sha256:" + "0" * 64))
    other = Signer(str(ec_key(tmp_path, "other")[0]))
    assert not other.signed(bundle, "fraud-detector", files)
    assert not ms.same_signature(other.sign(str(directory), files), bundle)


def test_certificate_mode_chain_verifies(tmp_path):
    pki = cert_chain(tmp_path, password="chain pass")
    directory, files = model(tmp_path, files={"weights.bin": os.urandom(100), "model.onnx": b"x"})
    signer = Signer(str(pki["key"]), "chain pass", str(pki["certificate"]), [str(pki["intermediate"])])
    bundle = signer.sign(str(directory), files)
    model_signing.verifying.Config().use_certificate_verifier(certificate_chain=[pki["ca"]]).verify(
        directory, write(tmp_path, bundle))
    assert ms.describe_signer(bundle) == signer.signer == "CN=ML release signing"
    assert ms.statement(bundle)[1] == files
    # A new certificate of the same subject is another signer.
    (tmp_path / "renewed").mkdir()
    renewed = cert_chain(tmp_path / "renewed", leaf_name="ML release signing")
    other = Signer(str(renewed["key"]), None, str(renewed["certificate"]), [str(renewed["intermediate"])])
    assert other.signer == signer.signer and not other.signed(bundle, "fraud-detector", files)


def test_modelcar_paths_below_model_path_are_the_names(tmp_path):
    key, pub = ec_key(tmp_path)
    directory, files = model(tmp_path, "m", files={"model.onnx": b"a"})
    (directory / "sub").mkdir()
    (directory / "sub" / "data.bin").write_bytes(b"b")
    files["sub/data.bin"] = "sha256:" + hashlib.sha256(b"b").hexdigest()
    bundle = Signer(str(key)).sign(str(directory), files)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
        directory, write(tmp_path, bundle))
    assert ms.statement(bundle) == ("m", files)


@pytest.mark.parametrize("password, given, expected", [
    ("right", "wrong", "wrong signing_key_password"),
    ("right", None, "is encrypted: give signing_key_password"),
    (None, "extra", "is not encrypted: remove signing_key_password"),
])
def test_wrong_password_is_a_clear_error(tmp_path, password, given, expected):
    key, _pub = ec_key(tmp_path, password=password)
    with pytest.raises(SigningError) as err:
        Signer(str(key), given)
    assert expected in err.value.msg and str(key) in err.value.msg
    assert "right" not in err.value.msg and "BEGIN" not in err.value.msg


def test_unusable_keys_and_certificates(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(SigningError, match="not an elliptic curve key"):
        Signer(str(rsa_key))
    with pytest.raises(SigningError, match="cannot read signing_key"):
        Signer(str(tmp_path / "missing.key"))
    pki = cert_chain(tmp_path)
    other, _pub = ec_key(tmp_path, "other")
    with pytest.raises(SigningError, match="is not the certificate of signing_key"):
        Signer(str(other), None, str(pki["certificate"]), [])
    with pytest.raises(SigningError, match="is not a PEM certificate"):
        Signer(str(pki["key"]), None, str(pki["key"]), [])


def test_a_symlink_in_the_model_is_refused(tmp_path):
    key, _pub = ec_key(tmp_path)
    directory, files = model(tmp_path)
    os.symlink("model.onnx", directory / "alias.onnx")
    with pytest.raises(SigningError, match="could not sign"):
        Signer(str(key)).sign(str(directory), files)


def test_the_files_placed_are_signed_under_their_names(tmp_path):
    key, _pub = ec_key(tmp_path)
    src = tmp_path / "build"
    src.mkdir()
    (src / "fraud.onnx").write_bytes(b"onnx")
    files = {"fraud.onnx": "sha256:" + hashlib.sha256(b"onnx").hexdigest()}
    bundle = ms.sign_files(Signer(str(key)), "fraud", files,
                           lambda d: ms.place_files(d, {"fraud.onnx": str(src / "fraud.onnx")}))
    assert ms.statement(bundle) == ("fraud", files)
    with pytest.raises(SigningError, match="signed other files"):
        ms.sign_files(Signer(str(key)), "fraud", dict(files, more="sha256:" + "1" * 64),
                      lambda d: ms.place_files(d, {"fraud.onnx": str(src / "fraud.onnx")}))


def test_a_certificate_subject_is_shown_as_one_bounded_line(tmp_path):
    pki = cert_chain(tmp_path, leaf_name="evil\x1b[2J\nname")
    directory, files = model(tmp_path)
    signer = Signer(str(pki["key"]), None, str(pki["certificate"]), [str(pki["intermediate"])])
    shown = ms.describe_signer(signer.sign(str(directory), files))
    assert shown.isprintable() and len(shown) <= ms.MAX_SUBJECT and shown.startswith("CN=evil")


def _bundle(payload, material=None, payload_type=ms.IN_TOTO):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                       "verificationMaterial": material if material is not None else {"publicKey": {"hint": "ab" * 32}},
                       "dsseEnvelope": {"payload": base64.b64encode(raw).decode(),
                                        "payloadType": payload_type, "signatures": []}}).encode()


def _statement(resources, name="m", method="files"):
    return {"_type": "https://in-toto.io/Statement/v1", "predicateType": ms.PREDICATE,
            "subject": [{"name": name, "digest": {"sha256": "00"}}],
            "predicate": {"resources": resources, "serialization": {"method": method}}}


@pytest.mark.parametrize("bundle", [
    b"", b"[]", b"{", b"\xff\xfe", b"[" * 100000,
    _bundle(b"not json"),
    _bundle(_statement([]), payload_type="text/plain"),
    _bundle(_statement([], method="shards")),
    _bundle(dict(_statement([]), predicateType="https://model_signing/Digests/v0.1")),
    _bundle(dict(_statement([]), subject=[])),
    _bundle(_statement([{"name": "a", "algorithm": "blake2", "digest": "00"}])),
    _bundle(_statement([{"name": "a", "algorithm": "sha256", "digest": "zz"}])),
    _bundle(_statement([{"name": "a", "algorithm": "sha256", "digest": "00"}] * 2)),
    _bundle(_statement([{"name": 1, "algorithm": "sha256", "digest": "00"}])),
])
def test_hostile_statements_are_refused_clearly(bundle):
    with pytest.raises(SigningError) as err:
        ms.statement(bundle, "signature X")
    assert "signature X" in err.value.msg


@pytest.mark.parametrize("material", [{}, {"publicKey": {}}, {"publicKey": {"hint": ""}},
                                      {"publicKey": {"hint": "ab" * 100000}},
                                      {"publicKey": {"hint": "\x1b[31m" + "a" * 60}},
                                      {"x509CertificateChain": {"certificates": [{"rawBytes": "!!"}]}},
                                      {"x509CertificateChain": {"certificates": [{"rawBytes": "AAAA"}]}},
                                      {"x509CertificateChain": {"certificates": []}}, []])
def test_bundles_naming_no_signer_are_refused(material):
    with pytest.raises(SigningError, match="names no signer"):
        ms.describe_signer(_bundle(_statement([]), material))
    assert ms.signers([_bundle(_statement([]), material)]) == []


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(["name", "digest", "algorithm", "hint",
                                                          "rawBytes", "resources", "method", "subject"]),
                                         inner, max_size=4), max_leaves=12)


@settings(max_examples=EXAMPLES, deadline=None)
@given(resources=st.lists(st.dictionaries(st.sampled_from(["name", "algorithm", "digest"]),
                                          st.text(max_size=6) | JSONISH, max_size=3), max_size=4),
       name=JSONISH, material=JSONISH, junk=st.binary(max_size=64))
def test_composed_hostile_bundles_only_raise_signing_error(resources, name, material, junk):
    for bundle in (_bundle(_statement(resources, name), material), junk):
        for read in (ms.statement, ms.describe_signer):
            try:
                read(bundle)
            except SigningError:
                pass
        assert isinstance(ms.same_signature(bundle, bundle), bool)
        assert isinstance(ms.signers([bundle]), list)
