"""Signatures travel with the model: a signature attached to a published model image (an OCI
referrer with the sha256-<hex> tag schema, as on CNCF distribution 2.8) reaches the host's store
by model_sync, the offline bundle's OCI layout by model_export (and from there the store again,
by model_sync from oci-layout:), and a site mirror by mirror_seed. Modules run as processes."""

import hashlib
import json

import pytest

from modules import run_module
from registries import LocalRegistry
from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle, _oci, _referrers, _registry

REPO = "signed/fraud-detector"
BUNDLE = json.dumps({"mediaType": _referrers.SIGSTORE_BUNDLE, "test": "transport"}).encode()


def client(registry):
    return _registry.RegistryClient(registry.url, "tester", registry.password, ca_path=registry.ca)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A second registry: the site mirror."""
    reg = LocalRegistry(tmp_path_factory.mktemp("mirror"), auth="htpasswd")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def signed(registry, sample_models):
    """fraud-detector 1.0 published and signed (one Sigstore bundle attached as a referrer)."""
    model = sample_models[("fraud-detector", "1.0")]
    result = run_module("model_publish", registry.args(
        registry=registry.url, repository=REPO, tag="1.0", model=str(model / "model.onnx"),
        metadata=str(model / "edgeml-model.json")))
    assert not result.get("failed"), result
    core = client(registry)
    body, media_type, digest = core.get_manifest(REPO, "1.0")
    subject = {"mediaType": media_type, "digest": digest, "size": len(body)}
    _referrers.push_signature(core, REPO, subject, BUNDLE)
    assert _referrers.fetch_signatures(core, REPO, digest) == [BUNDLE]
    return digest


def sync(store, endpoints, registry=None, **args):
    base = registry.args() if registry else {}
    return run_module("model_sync", dict(base, name="fraud", ref=f"{REPO}:1.0", registries=endpoints,
                                         store_dir=str(store), **args))


def kept(store, digest):
    base = store / "fraud" / "signatures" / digest.split(":")[1]
    return sorted(p.read_bytes() for p in base.iterdir()) if base.is_dir() else []


def test_sync_keeps_the_signature_check_apply_idempotent(registry, signed, tmp_path):
    store = tmp_path / "store"
    check = sync(store, [registry.url], registry, _ansible_check_mode=True)
    assert check["changed"] and check["signatures"] == 1 and not store.exists(), check
    first = sync(store, [registry.url], registry)
    assert not first.get("failed") and first["digest"] == signed, first
    assert (first["signatures"], first["signatures_source"], first["signature_errors"]) == \
        (1, registry.url, [])
    assert kept(store, signed) == [BUNDLE]
    name = hashlib.sha256(BUNDLE).hexdigest() + ".json"
    assert (store / "fraud" / "signatures" / signed.split(":")[1] / name).is_file()
    again = sync(store, [registry.url], registry)
    assert again["changed"] is False and again["signatures"] == 1, again
    info = run_module("model_info", {"store_dir": str(store), "name": "fraud"})
    assert info["models"]["fraud"]["versions"][0]["signatures"] == 1, info


def export(registry, dest, **args):
    return run_module("model_export", registry.args(
        registry=registry.url, dest=str(dest), models=[{"name": "fraud", "ref": f"{REPO}:1.0"}],
        **args))


def test_export_carries_the_signature_to_the_layout_and_model_sync_reads_it(registry, signed, tmp_path):
    bundle = tmp_path / "bundle"
    layout = bundle / "images"
    check = export(registry, layout, _ansible_check_mode=True)
    assert check["changed"] and not (layout / "index.json").exists(), check
    first = export(registry, layout)
    assert not first.get("failed") and first["changed"], first
    assert first["images"][0]["signatures"] == 1
    names = {e["annotations"][_oci.REF_NAME] for e in json.loads((layout / "index.json").read_text())["manifests"]}
    assert names == {f"{REPO}:1.0", f"{REPO}:{_referrers.fallback_tag(signed)}"}
    again = export(registry, layout)
    assert again["changed"] is False, again
    # The layout is still a sound bundle: sealed, it verifies (its file list covers the signatures).
    assert _bundle.check_layout(str(layout))[f"{REPO}:1.0"] == signed
    sealed = run_module("bundle_seal", {"path": str(bundle)})
    assert not sealed.get("failed"), sealed
    listed = {f["path"] for f in sealed["manifest"]["files"]}
    assert f"images/blobs/sha256/{hashlib.sha256(BUNDLE).hexdigest()}" in listed
    verified = run_module("bundle_verify", {"path": str(bundle), "require_signature": False})
    assert not verified.get("failed"), verified
    # A disconnected host syncs from the layout and gets the signature.
    store = tmp_path / "store"
    synced = sync(store, [f"oci-layout:{layout}"])
    assert not synced.get("failed") and synced["digest"] == signed, synced
    assert synced["signatures"] == 1 and synced["signatures_source"] == f"oci-layout:{layout}"
    assert kept(store, signed) == [BUNDLE]
    # Without signatures: the layout has none (and pruning drops the earlier ones).
    plain = tmp_path / "plain"
    assert export(registry, plain, signatures=False)["images"][0].get("signatures") is None
    assert _referrers.fetch_signatures(_registry.make_client(f"oci-layout:{plain}"), REPO, signed) == []


def seed(layout, mirror, **args):
    return run_module("mirror_seed", mirror.args(layout=str(layout), registry=mirror.url, **args))


def test_mirror_seed_carries_the_signature_and_the_host_prefers_it(registry, mirror, signed, tmp_path):
    layout = tmp_path / "images"
    assert not export(registry, layout).get("failed")
    check = seed(layout, mirror, _ansible_check_mode=True)
    assert check["changed"] and check["signatures_pushed"] == 1, check
    first = seed(layout, mirror)
    assert not first.get("failed") and first["pushed"] == [f"{REPO}:1.0"], first
    assert first["signatures_pushed"] == 1
    assert _referrers.fetch_signatures(client(mirror), REPO, signed) == [BUNDLE]
    again = seed(layout, mirror)
    assert again["changed"] is False and again["signatures_pushed"] == 0, again
    store = tmp_path / "store"
    synced = sync(store, [mirror.url, registry.url], mirror)
    assert synced["source"] == mirror.url and synced["signatures_source"] == mirror.url, synced


@pytest.fixture(scope="module")
def bare_mirror(tmp_path_factory, registry, signed):
    """A mirror seeded without signatures."""
    reg = LocalRegistry(tmp_path_factory.mktemp("bare-mirror"), auth="htpasswd")
    layout = tmp_path_factory.mktemp("bare-layout") / "images"
    assert not export(registry, layout).get("failed")
    result = seed(layout, reg, signatures=False)
    assert not result.get("failed") and result["signatures_pushed"] == 0, result
    yield reg
    reg.stop()


def test_a_mirror_without_signatures_alone_gives_none(bare_mirror, signed, tmp_path):
    store = tmp_path / "store"
    result = sync(store, [bare_mirror.url], bare_mirror)
    assert not result.get("failed") and result["digest"] == signed, result
    assert (result["signatures"], result["signatures_source"], result["signature_errors"]) == \
        (0, None, [])
    assert kept(store, signed) == []


def test_a_mirror_without_signatures_then_core_gives_cores(registry, bare_mirror, signed, tmp_path):
    store = tmp_path / "store"
    # Each LocalRegistry has its own password: the endpoints carry theirs.
    endpoints = [{"url": bare_mirror.url, "username": "tester", "password": bare_mirror.password},
                 {"url": registry.url, "username": "tester", "password": registry.password}]
    result = sync(store, endpoints, registry)
    assert result["source"] == bare_mirror.url and result["signatures_source"] == registry.url, result
    assert result["signatures"] == 1 and kept(store, signed) == [BUNDLE]
    again = sync(store, endpoints, registry)
    assert again["changed"] is False and again["signatures"] == 1, again


def test_mirror_seed_refuses_a_tampered_signature_index(registry, bare_mirror, signed, tmp_path):
    layout = tmp_path / "images"
    assert not export(registry, layout).get("failed")
    index = json.loads((layout / "index.json").read_text())
    bad = b"<html>not an index"
    (layout / "blobs" / "sha256" / hashlib.sha256(bad).hexdigest()).write_bytes(bad)
    for entry in index["manifests"]:
        if entry["annotations"][_oci.REF_NAME].endswith(_referrers.fallback_tag(signed)):
            entry.update(digest="sha256:" + hashlib.sha256(bad).hexdigest(), size=len(bad))
    (layout / "index.json").write_text(json.dumps(index))
    result = seed(layout, bare_mirror)
    assert result.get("failed") and "is not JSON" in result["msg"], result
    assert "signatures: false" in result["msg"]
    assert _referrers.fetch_signatures(client(bare_mirror), REPO, signed) == []
    assert seed(layout, bare_mirror, signatures=False)["changed"] is False
