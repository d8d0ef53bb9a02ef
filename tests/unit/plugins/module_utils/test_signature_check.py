"""Signature checks on the host (_signature_check, _trust): real keys and chains, directories
signed with model_signing's API and command line, versions staged in a real store."""

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from signing import (Chain, KeyPair, make_model, sign_with_certificate, sign_with_cli,
                     sign_with_key, stage, verify_with_cli)
from ansible_collections.edgeml.fleet.plugins.module_utils import _trust
from ansible_collections.edgeml.fleet.plugins.module_utils._signature_check import (
    MAX_BUNDLE, check, parse_bundle)
from ansible_collections.edgeml.fleet.plugins.module_utils._trust import TrustError, normalise

FILES = {"model.onnx": b"onnx weights " * 100, "edgeml-model.json": b'{"inputs": []}',
         "tokenizer/vocab.txt": b"a\nb\n"}


HOSTILE = settings(max_examples=60, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])
HOSTILE_FS = settings(max_examples=15, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two keys, a chain with two leaves, model A signed every way, model B signed by key."""
    base = tmp_path_factory.mktemp("signing")
    w = {"base": base, "old": KeyPair(base, "release-2025"), "new": KeyPair(base, "release-2026"),
         "stranger": KeyPair(base, "stranger"), "chain": Chain(base)}
    w["leaf"] = w["chain"].leaf("ml-release@example.com")
    w["other_leaf"] = w["chain"].leaf("intern@example.com")
    a = make_model(base / "fraud-detector", FILES)
    b = make_model(base / "churn", {"model.onnx": b"another model", "edgeml-model.json": b"{}"})
    sigs = base / "sigs"
    sigs.mkdir()
    w["a"], w["b"] = a, b
    w["a_old"] = sign_with_key(a, w["old"], sigs / "a_old")
    w["a_new"] = sign_with_key(a, w["new"], sigs / "a_new")
    w["a_cli"] = sign_with_cli(a, w["new"], sigs / "a_cli")
    w["a_stranger"] = sign_with_key(a, w["stranger"], sigs / "a_stranger")
    w["a_cert"] = sign_with_certificate(a, w["chain"], w["leaf"], sigs / "a_cert")
    w["a_intern"] = sign_with_certificate(a, w["chain"], w["other_leaf"], sigs / "a_intern")
    w["b_new"] = sign_with_key(b, w["new"], sigs / "b_new")
    return w


@pytest.fixture
def version(world, tmp_path):
    store, digest = stage(tmp_path / "store", "fraud-detector", world["a"])
    vdir = store.version_dir("fraud-detector", digest)
    return {"store": store, "digest": digest, "dir": vdir,
            "files": store.read_record(vdir)["files"]}


def run(version, bundles, trust, model="fraud-detector", **kwargs):
    return check(version["files"], model, bundles, normalise(trust), version["dir"], **kwargs)


def keys(world, *names, **extra):
    return dict({"keys": [world[n].trust() for n in names]}, **extra)


# -- outcomes ------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["a_new", "a_cli"])
def test_signed_with_a_trusted_key_verifies(world, version, which):
    result = run(version, [world[which]], keys(world, "new"))
    assert result["verified"] and result["signed"] and result["reason_code"] is None
    assert result["signer"] == f"key release-2026 ({world['new'].fingerprint[:23]})"
    assert result["signatures"][0]["outcome"] == "verified"


def test_unsigned_is_reported(world, version):
    result = run(version, [], keys(world, "new"))
    assert not result["verified"] and not result["signed"]
    assert result["reason_code"] == "unsigned"


def test_unknown_key(world, version):
    result = run(version, [world["a_stranger"]], keys(world, "new"))
    assert (result["verified"], result["reason_code"]) == (False, "unknown-signer")
    assert world["stranger"].fingerprint[:23] in result["reason"]


def test_revoked_key(world, version):
    result = run(version, [world["a_new"]], keys(world, "new", revoked=[world["new"].fingerprint]))
    assert (result["verified"], result["reason_code"]) == (False, "revoked")
    # revoked by its PEM, and without being among the keys any more
    result = run(version, [world["a_new"]], keys(world, "old", revoked=[world["new"].public]))
    assert result["reason_code"] == "revoked"


def test_a_file_changed_after_signing(world, tmp_path):
    changed = make_model(tmp_path / "fraud-detector", dict(FILES, **{"model.onnx": b"evil"}))
    store, digest = stage(tmp_path / "store", "fraud-detector", changed)
    vdir = store.version_dir("fraud-detector", digest)
    result = check(store.read_record(vdir)["files"], "fraud-detector", [world["a_new"]],
                   normalise(keys(world, "new")), vdir)
    assert result["reason_code"] == "content-mismatch"
    assert "'model.onnx' differs" in result["reason"]


def test_extra_and_missing_files_are_named(world, tmp_path):
    files = dict(FILES, **{"extra.bin": b"x"})
    del files["tokenizer/vocab.txt"]
    store, digest = stage(tmp_path / "store", "fraud-detector", make_model(tmp_path / "m", files))
    vdir = store.version_dir("fraud-detector", digest)
    result = check(store.read_record(vdir)["files"], "fraud-detector", [world["a_new"]],
                   normalise(keys(world, "new")), vdir)
    assert result["reason_code"] == "content-mismatch"
    assert "'tokenizer/vocab.txt' is missing" in result["reason"]
    assert "'extra.bin' is not signed" in result["reason"]


def test_signature_of_model_b_on_model_a(world, version):
    result = run(version, [world["b_new"]], keys(world, "new"))
    assert result["reason_code"] == "other-model"
    assert "'churn'" in result["reason"]


def test_key_rotation(world, version, tmp_path):
    both = keys(world, "old", "new")
    assert run(version, [world["a_old"]], both)["verified"]
    assert run(version, [world["a_new"]], both)["verified"]
    revoked = dict(both, revoked=[world["old"].fingerprint])
    assert run(version, [world["a_old"]], revoked)["reason_code"] == "revoked"
    assert run(version, [world["a_new"]], revoked)["verified"]
    # a version carrying both signatures is accepted on the new one
    result = run(version, [world["a_old"], world["a_new"]], revoked)
    assert result["verified"] and "release-2026" in result["signer"]
    assert sorted(s["outcome"] for s in result["signatures"]) == ["revoked", "verified"]


def test_certificate_identities(world, version):
    chain = world["chain"]
    allowed = {"certificates": [chain.trust(identities=["ml-release@example.com"])]}
    result = run(version, [world["a_cert"]], allowed)
    assert result["verified"]
    assert result["signer"] == "certificate 'ml-release@example.com' from corp-ml-ca"
    assert run(version, [world["a_intern"]], allowed)["reason_code"] == "identity"
    assert run(version, [world["a_intern"]], {"certificates": [chain.trust()]})["verified"]


def test_certificate_under_another_chain_or_revoked(world, version, tmp_path):
    other = Chain(tmp_path, "other")
    result = run(version, [world["a_cert"]], {"certificates": [other.trust("other-ca")]})
    assert result["reason_code"] == "unknown-signer"
    leaf_cert = world["leaf"][2]
    from cryptography.hazmat.primitives import serialization
    der = leaf_cert.public_bytes(serialization.Encoding.DER)
    for revoked in (_trust.fingerprint(der), world["chain"].int_pem, world["chain"].root_pem):
        trust = {"certificates": [world["chain"].trust()], "revoked": [revoked]}
        assert run(version, [world["a_cert"]], trust)["reason_code"] == "revoked"


def test_no_second_hashing_pass(world, version):
    """The record's digest is what was signed but the file on disk differs: the store's
    verified digests are trusted (rehash=false), the library's own hashing sees the change."""
    with open(os.path.join(version["dir"], "model.onnx"), "r+b") as handle:
        handle.write(b"X")
    trust = keys(world, "new")
    assert run(version, [world["a_new"]], trust)["verified"]
    result = run(version, [world["a_new"]], trust, rehash=True)
    assert result["reason_code"] == "content-mismatch"


def test_upstream_cli_verifies_what_the_api_signed_and_the_reverse(world, version, tmp_path):
    pub = tmp_path / "new.pub"
    pub.write_text(world["new"].public)
    sig = tmp_path / "api.sig"
    sig.write_bytes(world["a_new"])
    proc = verify_with_cli(world["a"], pub, sig)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run(version, [world["a_cli"]], keys(world, "new"), rehash=True)["verified"]


def _sign_ignoring(world, source, sig, paths, ignore_git=True):
    import model_signing
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=world["new"].private).set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=paths, ignore_git_paths=ignore_git)
    ).sign(source, sig)
    return sig.read_bytes()


def _check_staged(world, tmp_path, source, bundle, rehash=False, where="store"):
    store, digest = stage(tmp_path / where, "fraud-detector", source)
    vdir = store.version_dir("fraud-detector", digest)
    return check(store.read_record(vdir)["files"], "fraud-detector", [bundle],
                 normalise(keys(world, "new")), vdir, rehash=rehash)


def test_a_file_the_signature_leaves_out_is_refused(world, tmp_path):
    """ignore_paths (signed, by a trusted key) leave a file out: had the store staged it, it would
    be served unsigned (README.md here, changed after signing), so the version is refused."""
    source = make_model(tmp_path / "fraud-detector", dict(FILES, **{"README.md": b"hi"}))
    bundle = _sign_ignoring(world, source, tmp_path / "sig", ["README.md"])
    (source / "README.md").write_text("changed after signing")
    for rehash in (False, True):
        result = _check_staged(world, tmp_path, source, bundle, rehash, f"store{rehash}")
        assert (result["verified"], result["reason_code"]) == (False, "content-mismatch")
        assert "'README.md'" in result["reason"] and "ignore_paths" in result["reason"]
    # without the file the same signature verifies: ignore_paths alone are not refused
    (source / "README.md").unlink()
    assert _check_staged(world, tmp_path, source, bundle, where="store3")["verified"]


@HOSTILE_FS
@given(ignored=st.lists(st.sampled_from(["model.onnx", "tokenizer", "tokenizer/vocab.txt",
                                         "./model.onnx", "tokenizer/", "edgeml-model.json",
                                         "absent", "tok"]), min_size=1, max_size=3, unique=True))
def test_ignore_paths_never_let_a_file_in_unsigned(world, tmp_path_factory, ignored):
    """Whatever a trusted statement's ignore_paths name, a file of the version they cover is never
    accepted unsigned; a version verifies only when the paths cover none of its files."""
    tmp = tmp_path_factory.mktemp("ignored")
    source = make_model(tmp / "fraud-detector", FILES)
    bundle = _sign_ignoring(world, source, tmp / "sig", ignored, ignore_git=False)
    covered = [rel for rel in FILES if any(rel == p.rstrip("/").removeprefix("./")
                                           or rel.startswith(p.rstrip("/") + "/") for p in ignored)]
    (source / (covered or ["model.onnx"])[0]).write_bytes(b"evil")  # what an attacker swaps in
    result = _check_staged(world, tmp, source, bundle)
    assert (result["verified"], result["reason_code"]) == (False, "content-mismatch")
    assert ("ignore_paths" in result["reason"]) is bool(covered)


@pytest.mark.parametrize("ignore_git", [True, False])
def test_git_files_follow_what_the_signer_did(world, tmp_path, ignore_git):
    """Git files are left out only when the signature says they were (model_signing's default),
    and a version holding one the signature left out is refused."""
    source = make_model(tmp_path / "fraud-detector", dict(FILES, **{".gitattributes": b"*.onnx lfs"}))
    bundle = _sign_ignoring(world, source, tmp_path / "sig", [], ignore_git)
    assert (".gitattributes" in parse_bundle(bundle)["resources"]) is not ignore_git
    for rehash in (False, True):
        result = _check_staged(world, tmp_path, source, bundle, rehash, f"store{rehash}")
        assert result["verified"] is not ignore_git
        if ignore_git:
            assert "'.gitattributes'" in result["reason"]
    (source / ".gitattributes").unlink()
    assert _check_staged(world, tmp_path, source, bundle, where="store3")["verified"] is ignore_git


def test_symlinks_fall_back_to_the_library(world, tmp_path):
    source = make_model(tmp_path / "fraud-detector", FILES)
    os.symlink("model.onnx", source / "alias.onnx")
    sig = tmp_path / "sig"
    import model_signing
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=world["new"].private).set_hashing_config(
        model_signing.hashing.Config().set_allow_symlinks(True)).sign(source, sig)
    store, digest = stage(tmp_path / "store", "fraud-detector", source)
    vdir = store.version_dir("fraud-detector", digest)
    files = store.read_record(vdir)["files"]
    assert files["alias.onnx"] == {"link": "model.onnx"}
    trust = normalise(keys(world, "new"))
    assert check(files, "fraud-detector", [sig.read_bytes()], trust, vdir)["verified"]
    # the plain signature does not cover the link, and the library refuses links it did not allow
    assert check(files, "fraud-detector", [world["a_new"]], trust, vdir)["reason_code"] == \
        "content-mismatch"


def test_most_telling_failure_wins(world, version):
    trust = keys(world, "new", revoked=[world["old"].fingerprint])
    trust["keys"].append(world["old"].trust())
    result = run(version, [b"not json", world["a_stranger"], world["b_new"], world["a_old"]], trust)
    assert result["reason_code"] == "revoked"
    assert [s["outcome"] for s in result["signatures"]] == [
        "unreadable", "unknown-signer", "other-model", "revoked"]


def test_a_bundle_over_1_mib_is_ignored(world, version):
    doc = json.loads(world["a_new"])
    doc["padding"] = "x" * MAX_BUNDLE
    result = run(version, [json.dumps(doc).encode()], keys(world, "new"))
    assert result["reason_code"] == "unsigned" and not result["signatures"]


# -- the trust configuration -----------------------------------------------------------------
def test_trust_defaults_and_normal_form(world):
    assert normalise(None)["policy"] == "off"
    trust = normalise({"keys": [world["new"].trust()],
                       "revoked": ["SHA256:" + "A" * 64, world["old"].public]})
    assert trust["policy"] == "required"
    assert trust["revoked"] == sorted(["sha256:" + "a" * 64, world["old"].fingerprint])
    assert normalise(keys(world, "new"), policy="optional")["policy"] == "optional"


PRIVATE = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize("trust, words", [
    ({"kyes": []}, "unknown field(s) kyes"),
    ({"keys": "abc"}, "keys must be a list"),
    ({"keys": [{"name": "k", "public_key": PRIVATE}]}, "keys[0] (k)"),
    ({"keys": [{"name": "../k", "public_key": "x"}]}, "keys[0]: name '../k'"),
    ({"certificates": [{"name": "ca", "chain": "nothing"}]}, "certificates[0] (ca): chain"),
    ({"certificates": [{"name": "ca", "chain": "x", "identities": "a"}]}, "certificates[0] (ca)"),
    ({"revoked": ["sha256:abc"]}, "revoked[0]"),
    ({"policy": "sometimes"}, "policy 'sometimes'"),
    ({"policy": "required"}, "no keys or certificates are trusted"),
])
def test_trust_errors_name_the_entry(trust, words):
    with pytest.raises(TrustError) as info:
        normalise(trust)
    assert words in info.value.msg


def test_a_key_the_library_cannot_use_is_named(world, version):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives import serialization
    pem = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for bundles in ([world["a_new"]], []):  # an unsigned version does not hide it
        with pytest.raises(TrustError, match=r"keys\[0\] \(rsa\)"):
            run(version, bundles, {"keys": [{"name": "rsa", "public_key": pem}]})


def test_duplicate_names(world):
    with pytest.raises(TrustError, match="used twice"):
        normalise({"keys": [world["new"].trust(), world["new"].trust()]})


# -- hostile bundles -----------------------------------------------------------------------
def _doc(world):
    return json.loads(world["a_new"])


def _statement(doc):
    return json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))


def _with_statement(doc, statement):
    doc = json.loads(json.dumps(doc))
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return doc


def _refused(result):
    assert not result["verified"]
    assert result["reason_code"] in ("unreadable", "bad-signature", "unknown-signer",
                                     "content-mismatch", "other-model", "identity", "revoked",
                                     "unsigned")
    assert "\n" not in result["reason"]
    return result


@HOSTILE
@given(data=st.data())
def test_byte_flips_never_verify(world, version, data):
    raw = bytearray(world["a_new"])
    for _flip in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    result = run(version, [bytes(raw)], keys(world, "new"))
    if bytes(raw) != world["a_new"]:
        # a flip in JSON whitespace or a field the verifier does not read leaves it valid
        if result["verified"]:
            assert _statement(json.loads(raw)) == _statement(_doc(world))
        else:
            _refused(result)


@HOSTILE
@given(change=st.sampled_from(["files", "hint", "payload-of-b", "sig-of-b", "no-sig", "cert",
                               "media-type", "payload-type", "empty-resources"]))
def test_field_swaps_and_hint_spoofing_never_verify(world, version, change):
    doc, other = _doc(world), json.loads(world["b_new"])
    if change == "files":  # the payload edited to the record's digests: the signature breaks
        statement = _statement(doc)
        statement["predicate"]["resources"][0]["digest"] = "0" * 64
        doc = _with_statement(doc, statement)
    elif change == "hint":  # a stranger's signature claiming the trusted key
        doc = json.loads(world["a_stranger"])
        doc["verificationMaterial"]["publicKey"]["hint"] = world["new"].fingerprint[7:]
    elif change == "payload-of-b":
        doc["dsseEnvelope"]["payload"] = other["dsseEnvelope"]["payload"]
    elif change == "sig-of-b":
        doc["dsseEnvelope"]["signatures"] = other["dsseEnvelope"]["signatures"]
    elif change == "no-sig":
        doc["dsseEnvelope"]["signatures"] = []
    elif change == "cert":  # the key bundle dressed as a certificate bundle
        cert = json.loads(world["a_cert"])
        doc["verificationMaterial"] = cert["verificationMaterial"]
    elif change == "media-type":
        doc["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.2+json"
    elif change == "payload-type":
        doc["dsseEnvelope"]["payloadType"] = "text/plain"
    elif change == "empty-resources":
        statement = _statement(doc)
        statement["predicate"]["resources"] = []
        doc = _with_statement(doc, statement)
    trust = keys(world, "new")
    trust["certificates"] = [world["chain"].trust()]
    result = _refused(run(version, [json.dumps(doc).encode()], trust))
    if change == "hint":
        assert result["reason_code"] == "bad-signature"


@HOSTILE
@given(names=st.lists(st.sampled_from(["../model.onnx", "/etc/passwd", "a/../../x", "",
                                       "model.onnx/..", "./model.onnx", "\x00", "é\udcff"]),
                      min_size=1, max_size=5))
def test_hostile_resource_names_never_verify(world, version, names):
    doc = _doc(world)
    statement = _statement(doc)
    statement["predicate"]["resources"] += [{"name": n, "algorithm": "sha256", "digest": "0" * 64}
                                            for n in names]
    statement["predicate"]["serialization"]["ignore_paths"] = names
    raw = json.dumps(_with_statement(doc, statement)).encode("utf-8", "surrogateescape")
    _refused(run(version, [raw], keys(world, "new")))


def test_huge_resource_lists_and_deep_json(world, version):
    doc = _doc(world)
    statement = _statement(doc)
    statement["predicate"]["resources"] = [{"name": f"f{i}", "algorithm": "sha256",
                                            "digest": "0" * 64} for i in range(8000)]
    huge = json.dumps(_with_statement(doc, statement)).encode()
    deep = b'{"mediaType": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    deep_payload = json.dumps(_with_statement(doc, {"a": 1})).encode().replace(
        b'"payload": "', b'"payload": "' + base64.b64encode(b"[" * 50000 + b"]" * 50000) + b'", "x": "')
    for raw in (huge, deep, deep_payload, b"\xff\xfe{}", b"[]", b"null", b"{}",
                world["a_new"].decode().replace("{", "{\"\\ud800\": 1, ", 1).encode()):
        _refused(run(version, [raw], keys(world, "new")))


@HOSTILE
@given(raw=st.binary(max_size=2048) | st.text(max_size=512).map(lambda t: t.encode()))
def test_random_bytes_are_unreadable(world, version, raw):
    result = _refused(run(version, [raw], keys(world, "new")))
    assert result["reason_code"] == "unreadable"


def test_parse_keeps_only_what_it_checked(world):
    info = parse_bundle(world["a_new"])
    assert info["mode"] == "key" and info["hint"] == world["new"].fingerprint[7:]
    assert info["subject"] == "fraud-detector" and set(info["resources"]) == set(FILES)
    assert parse_bundle(world["a_cert"])["mode"] == "certificate"


def test_the_record_is_what_is_trusted_not_the_directory_name(world, tmp_path):
    """Verification does not depend on where the version lives (versions/<hex>)."""
    store, digest = stage(tmp_path / "s", "renamed", world["a"])
    vdir = store.version_dir("renamed", digest)
    assert Path(vdir).name == digest[7:]
    assert check(store.read_record(vdir)["files"], "renamed", [world["a_new"]],
                 normalise(keys(world, "new")), vdir)["verified"]


NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
               min_size=1, max_size=20).filter(
                   lambda n: n not in (".", "..") and len(n.encode()) < 200)


@HOSTILE_FS
@given(name=NAME, link=st.booleans())
def test_reasons_never_carry_control_characters(world, tmp_path_factory, name, link):
    """File names come from the registry (layer titles, modelcar tar entries) and model_signing
    quotes them in its errors: a reason (a module message, a log line, a rejection record) shows
    newlines, terminal escapes and bidi controls as escapes."""
    tmp = tmp_path_factory.mktemp("names")
    source = make_model(tmp / "fraud-detector", FILES)
    if link:  # the library hashes a version with links, and quotes the link's path
        os.symlink("model.onnx", source / name)
    else:
        (source / name).write_bytes(b"unsigned")
    for rehash in (False, True):
        result = _check_staged(world, tmp, source, world["a_new"], rehash, f"store{rehash}")
        assert not result["verified"]
        for text in [result["reason"]] + [s["reason"] for s in result["signatures"]]:
            assert text.isprintable(), text


def test_a_revoked_key_is_refused_inside_a_certificate_too(world, version):
    """The key that leaked is revoked by its public key (PEM or fingerprint): a certificate for
    that key, under a trusted chain, is refused too, and a second, valid signature is what
    verifies."""
    from cryptography.hazmat.primitives import serialization
    leaf_key = world["leaf"][2].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for revoked in (leaf_key, _trust.fingerprint(leaf_key.encode())):
        trust = {"certificates": [world["chain"].trust()], "revoked": [revoked]}
        assert run(version, [world["a_cert"]], trust)["reason_code"] == "revoked"
        result = run(version, [world["a_cert"], world["a_intern"]], trust)
        assert result["verified"] and "intern@example.com" in result["signer"]
