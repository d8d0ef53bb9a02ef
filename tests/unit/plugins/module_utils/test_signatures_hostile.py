"""model_sync fetching an image's signatures (OCI referrers, tag schema) from a hostile registry,
run as Ansible runs it on a host. A bad signature never fails the sync (the host's signature
check decides); it is ignored or reported in signature_errors, and nothing but the version's
signatures directory changes: the store's names come from content hashes only."""

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hostile_registry import OCI_INDEX, OCI_MANIFEST, HostileRegistry, digest_of, raw
from test_registry_hostile import BENIGN, REPO, sync, tree_digest
from ansible_collections.edgeml.fleet.plugins.module_utils import _referrers
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._layout import LayoutClient

sys.path.append(str(Path(__file__).resolve().parents[3] / "integration"))
from modules import run_module  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def registry():
    server = HostileRegistry()
    yield server
    server.stop()


def bundle(n):
    return json.dumps({"mediaType": _referrers.SIGSTORE_BUNDLE, "n": n}).encode()


def subject_of(registry, digest):
    body, media_type = registry.manifests[(REPO, digest)]
    return {"mediaType": media_type, "digest": digest, "size": len(body)}


def referrer(registry, subject, data, layer=None):
    """Serve a referrer manifest (subject, one bundle layer) and its blobs; returns its index entry."""
    body, blobs = _referrers.signature_manifest(subject, data)
    for descriptor, blob in blobs:
        registry.blobs[descriptor["digest"]] = blob
    if layer is not None:  # a crafted layer descriptor in place of the true one
        doc = json.loads(body)
        doc["layers"] = [layer]
        body = json.dumps(doc).encode()
    registry.manifest(REPO, None, body)
    return {"mediaType": OCI_MANIFEST, "digest": digest_of(body), "size": len(body),
            "artifactType": _referrers.SIGSTORE_BUNDLE}


def list_referrers(registry, digest, entries):
    registry.manifest(REPO, _referrers.fallback_tag(digest),
                      {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX)


def signature_files(store, digest):
    base = store / "m" / "signatures" / digest.split(":")[1]
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def test_signatures_are_kept_with_the_version_and_never_erased_by_an_empty_answer(registry, tmp_path):
    digest = registry.artifact(REPO, "1", BENIGN)
    subject = subject_of(registry, digest)
    list_referrers(registry, digest, [referrer(registry, subject, bundle(1))])
    store = tmp_path / "store"
    check = sync(tmp_path, [registry.url], ref=f"{REPO}:1", _ansible_check_mode=True)
    assert check["changed"] and check["signatures"] == 1 and not store.exists(), check
    first = sync(tmp_path, [registry.url], ref=f"{REPO}:1")
    assert not first.get("failed") and first["changed"], first
    assert (first["signatures"], first["signatures_source"], first["signature_errors"]) == \
        (1, registry.url, [])
    assert signature_files(store, digest) == [hashlib.sha256(bundle(1)).hexdigest() + ".json"]
    again = sync(tmp_path, [registry.url], ref=f"{REPO}:1")
    assert not again["changed"] and again["signatures"] == 1, again
    # A second signature appears. Pinned and intact with signatures kept, the registry is not
    # asked (no link needed); refresh_signatures asks it for the signatures only.
    list_referrers(registry, digest, [referrer(registry, subject, bundle(1)),
                                      referrer(registry, subject, bundle(2))])
    pinned = sync(tmp_path, [registry.url], ref=f"{REPO}:1", digest=digest)
    assert not pinned["changed"] and pinned["signatures"] == 1, pinned
    pinned = sync(tmp_path, [registry.url], ref=f"{REPO}:1", digest=digest, refresh_signatures=True)
    assert pinned["changed"] and pinned["source"] == "store" and pinned["signatures"] == 2, pinned
    # The registry has none now (a mirror that lacks them): the store keeps its own.
    del registry.manifests[(REPO, _referrers.fallback_tag(digest))]
    kept = sync(tmp_path, [registry.url], ref=f"{REPO}:1", digest=digest, refresh_signatures=True)
    assert not kept["changed"] and kept["signatures"] == 2 and kept["signatures_source"] == "store"
    off = sync(tmp_path, [registry.url], ref=f"{REPO}:1", digest=digest, signatures=False)
    assert not off["changed"] and off["signatures"] == 2, off
    info = run_module("model_info", {"store_dir": str(store)})
    assert info["models"]["m"]["versions"][0]["signatures"] == 2, info


def test_no_endpoint_for_a_version_in_the_store_is_no_failure(tmp_path):
    registry = HostileRegistry()
    digest = registry.artifact(REPO, "1", BENIGN)
    assert not sync(tmp_path, [registry.url], ref=f"{REPO}:1").get("failed")
    registry.stop()  # unreachable now; an endpoint that is not even a URL is reported too
    result = sync(tmp_path, [registry.url, "ftp://nowhere"], ref=f"{REPO}:1", digest=digest)
    assert not result.get("failed") and not result["changed"], result
    assert len(result["signature_errors"]) == 2 and result["signatures"] == 0, result


# -- hostile signatures: (registry, digest, subject) -> (expected signatures, error fragment)
def other_subject(registry, digest, subject):
    """The index under this image lists a signature of another image: ignored."""
    other = dict(subject, digest=registry.artifact(REPO, "other", b"another model"))
    list_referrers(registry, digest, [referrer(registry, other, bundle(1))])
    return 0, None


def oversized(registry, digest, subject):
    """A bundle layer that says it is over MAX_SIGNATURE_BYTES: ignored, never read."""
    big = b"x" * (_referrers.MAX_SIGNATURE_BYTES + 1)
    registry.blobs[digest_of(big)] = big
    layer = {"mediaType": _referrers.SIGSTORE_BUNDLE, "digest": digest_of(big), "size": len(big)}
    list_referrers(registry, digest, [referrer(registry, subject, bundle(1), layer),
                                      referrer(registry, subject, bundle(2))])
    return 1, None


def not_its_digest(registry, digest, subject):
    """A bundle blob that does not hash to its digest: an error, the sync still succeeds."""
    entry = referrer(registry, subject, bundle(1))
    registry.blobs[digest_of(bundle(1))] = bundle(9)
    list_referrers(registry, digest, [entry])
    return 0, "is not the"


def endless_blob(registry, digest, subject):
    """A bundle blob that says it is small and then never ends: read up to the cap only."""
    entry = referrer(registry, subject, bundle(1))
    registry.blobs[digest_of(bundle(1))] = raw(b"y" * (2 * _referrers.MAX_SIGNATURE_BYTES))
    list_referrers(registry, digest, [entry])
    return 0, "is not the"


def too_many(registry, digest, subject):
    """More referrers than MAX_REFERRERS: only the first ones are read."""
    list_referrers(registry, digest, [referrer(registry, subject, bundle(n))
                                      for n in range(_referrers.MAX_REFERRERS + 8)])
    return _referrers.MAX_REFERRERS, None


def tag_not_json(registry, digest, _subject):
    registry.manifest(REPO, _referrers.fallback_tag(digest), b"<html>not json", OCI_INDEX)
    return 0, "is not JSON"


def tag_not_an_index(registry, digest, _subject):
    registry.manifest(REPO, _referrers.fallback_tag(digest), {"manifests": "all of them"}, OCI_INDEX)
    return 0, "is not an image index"


def traversal_digest(registry, digest, _subject):
    entry = {"mediaType": OCI_MANIFEST, "digest": "sha256:../../../x", "size": 2,
             "artifactType": _referrers.SIGSTORE_BUNDLE}
    list_referrers(registry, digest, [entry])
    return 0, "is not a sha256 digest"


def missing_referrer(registry, digest, subject):
    entry = referrer(registry, subject, bundle(1))
    del registry.manifests[(REPO, entry["digest"])]
    list_referrers(registry, digest, [entry])
    return 0, "not found"


def not_a_bundle(registry, digest, subject):
    """Other artifact types (an SBOM), or a referrer with two layers: not signatures."""
    sbom = dict(referrer(registry, subject, bundle(1)), artifactType="application/spdx+json")
    two = referrer(registry, subject, bundle(2), {"mediaType": "x", "digest": digest, "size": 1})
    list_referrers(registry, digest, [sbom, two])
    return 0, None


CASES = {f.__name__: f for f in (other_subject, oversized, not_its_digest, endless_blob, too_many,
                                 tag_not_json, tag_not_an_index, traversal_digest,
                                 missing_referrer, not_a_bundle)}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_signatures_never_fail_the_sync_nor_write_outside(case, registry, tmp_path):
    (tmp_path / "x").write_text("decoy at the traversal target\n")
    digest = registry.artifact(REPO, "1", BENIGN)
    store = tmp_path / "store"
    first = sync(tmp_path, [registry.url], ref=f"{REPO}:1", signatures=False)
    assert not first.get("failed"), first
    sig_dir = str(store / "m" / "signatures")
    before = tree_digest(tmp_path, skip=sig_dir)
    count, fragment = CASES[case](registry, digest, subject_of(registry, digest))
    result = sync(tmp_path, [registry.url], ref=f"{REPO}:1")
    assert not result.get("failed") and result["digest"] == digest, result
    assert result["signatures"] == count, result
    if fragment:
        assert any(fragment in e for e in result["signature_errors"]), result
    else:
        assert result["signature_errors"] == [], result
    assert tree_digest(tmp_path, skip=sig_dir) == before, "something outside signatures/ changed"
    for name in signature_files(store, digest):
        data = (store / "m" / "signatures" / digest.split(":")[1] / name).read_bytes()
        assert name == hashlib.sha256(data).hexdigest() + ".json"
    assert len(signature_files(store, digest)) == count


def test_a_mirror_without_signatures_then_core_with_them(tmp_path):
    mirror, core = HostileRegistry(), HostileRegistry()
    try:
        digest = mirror.artifact(REPO, "1", BENIGN)
        assert core.artifact(REPO, "1", BENIGN) == digest
        list_referrers(core, digest, [referrer(core, subject_of(core, digest), bundle(1))])
        result = sync(tmp_path, [mirror.url, core.url], ref=f"{REPO}:1")
        assert result["source"] == mirror.url and result["signatures_source"] == core.url, result
        assert result["signatures"] == 1
    finally:
        mirror.stop()
        core.stop()


# -- the same rules on an OCI image layout (an offline bundle from a stranger), composed ---------
ENTRY = st.fixed_dictionaries({}, optional={
    "mediaType": st.sampled_from([OCI_MANIFEST, OCI_INDEX, "x"]),
    "digest": st.one_of(st.sampled_from(["sha256:" + "0" * 64, "sha256:../x", "md5:1"]),
                        st.text(max_size=8)),
    "size": st.one_of(st.integers(-1, 1 << 30), st.text(max_size=3)),
    "artifactType": st.sampled_from([_referrers.SIGSTORE_BUNDLE, "x"])})
INDEX = st.one_of(st.binary(max_size=64),
                  st.builds(lambda m: json.dumps({"manifests": m}).encode(),
                            st.one_of(st.lists(st.one_of(ENTRY, st.integers()), max_size=20),
                                      st.text(max_size=4))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=INDEX, good=st.integers(0, 3))
def test_a_layout_fallback_index_of_anything(tmp_path, index, good):
    """Whatever the index says, fetch_signatures returns only true bundles of this subject or
    raises the collection's error; it never reads outside the layout."""
    root = tmp_path / "layout"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for old in blobs.iterdir():
        old.unlink()

    def put(data):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return "sha256:" + hashlib.sha256(data).hexdigest()
    image = json.dumps({"schemaVersion": 2, "layers": []}).encode()
    subject = {"mediaType": OCI_MANIFEST, "digest": put(image), "size": len(image)}
    entries = []
    for n in range(good):
        body, parts = _referrers.signature_manifest(subject, bundle(n))
        for _descriptor, data in parts:
            put(data)
        entries.append({"mediaType": OCI_MANIFEST, "digest": put(body), "size": len(body),
                        "artifactType": _referrers.SIGSTORE_BUNDLE})
    try:
        doc = json.loads(index)
        if isinstance(doc, dict) and isinstance(doc.get("manifests"), list):
            doc["manifests"] = entries + doc["manifests"]
            index = json.dumps(doc).encode()
    except ValueError:
        pass
    tag_digest = put(index)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": tag_digest, "size": len(index), "annotations": {
            "org.opencontainers.image.ref.name": f"{REPO}:{_referrers.fallback_tag(subject['digest'])}"}}]}))
    try:
        found = _referrers.fetch_signatures(LayoutClient(str(root)), REPO, subject["digest"])
    except EdgemlError:
        return
    assert set(found) <= {bundle(n) for n in range(good)}
    assert len(found) <= _referrers.MAX_REFERRERS
    assert os.path.exists(tmp_path / "layout")


# -- model_export: what a hostile registry's signatures can do to an offline bundle's layout ---
def export(registry, dest, **args):
    return run_module("model_export", dict({"registry": registry.url, "dest": str(dest),
                                            "models": [{"name": "m", "ref": f"{REPO}:1"}],
                                            "retries": 0, "timeout": 5}, **args))


def layout_names(dest):
    index = json.loads((dest / "index.json").read_text())
    return sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"])


def test_export_writes_only_this_images_true_signatures(registry, tmp_path):
    digest = registry.artifact(REPO, "1", BENIGN)
    subject = subject_of(registry, digest)
    other = dict(subject, digest=registry.artifact(REPO, "other", b"another model"))
    list_referrers(registry, digest, [referrer(registry, other, bundle(7)),
                                      referrer(registry, subject, bundle(1))])
    (tmp_path / "x").write_text("decoy\n")
    before = tree_digest(tmp_path)
    dest = tmp_path / "images"
    result = export(registry, dest)
    assert not result.get("failed") and result["images"][0]["signatures"] == 1, result
    assert layout_names(dest) == [f"{REPO}:1", f"{REPO}:{_referrers.fallback_tag(digest)}"]
    layout = LayoutClient(str(dest))
    assert _referrers.fetch_signatures(layout, REPO, digest) == [bundle(1)]
    blobs = {p.name for p in (dest / "blobs" / "sha256").iterdir()}
    assert hashlib.sha256(bundle(7)).hexdigest() not in blobs  # the other image's: not copied
    assert all(hashlib.sha256((dest / "blobs" / "sha256" / n).read_bytes()).hexdigest() == n
               for n in blobs)
    assert tree_digest(tmp_path, skip=str(dest)) == before
    assert export(registry, dest)["changed"] is False


@pytest.mark.parametrize("case", ["not_its_digest", "tag_not_json", "traversal_digest"])
def test_export_refuses_a_bad_signature_and_says_how_to_go_on(case, registry, tmp_path):
    digest = registry.artifact(REPO, "1", BENIGN)
    CASES[case](registry, digest, subject_of(registry, digest))
    result = export(registry, tmp_path / "images")
    assert result.get("failed") and "signatures: false" in result["msg"], result
    assert f"{REPO}@{digest}" in result["msg"]
    plain = export(registry, tmp_path / "images", signatures=False)
    assert not plain.get("failed") and layout_names(tmp_path / "images") == [f"{REPO}:1"], plain
