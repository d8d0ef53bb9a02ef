"""model_sync, model_info and model_publish against real registries (CNCF distribution)."""

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modules import module_command, module_env, run_module
from registries import FlakyLink, big_file, free_port
from ansible_collections.edgeml.fleet.plugins.module_utils import _oci, _registry


def loads_and_answers(store, name):
    """The active version loads in onnxruntime and reproduces its golden outputs."""
    current = Path(store) / name / "current"
    meta = json.loads((current / "edgeml-model.json").read_text())
    session = ort.InferenceSession(str(current / "model.onnx"), providers=["CPUExecutionProvider"])
    golden = meta["golden"][0]
    feeds = {k: np.array(v, dtype=np.float32) for k, v in golden["inputs"].items()}
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    for key, want in golden["outputs"].items():
        np.testing.assert_allclose(outputs[key], np.array(want), atol=meta["tolerance"])
    return os.readlink(current)


def publish(registry, repo, tag, model_dir, **extra):
    result = run_module("model_publish", registry.args(
        registry=registry.url, repository=repo, tag=tag, model=str(model_dir / "model.onnx"),
        metadata=str(model_dir / "edgeml-model.json"), **extra))
    assert not result.get("failed"), result
    return result


def sync(registry, store, **args):
    base = registry.args(registries=[registry.url], store_dir=str(store)) if registry else {}
    return run_module("model_sync", dict(base, **args), diff=True)


@pytest.fixture(scope="module")
def published(registry, sample_models):
    """fraud-detector 1.0 and 1.1 in both shapes on the loopback registry."""
    refs = {}
    for version in ("1.0", "1.1"):
        model = sample_models[("fraud-detector", version)]
        for shape in ("artifact", "modelcar"):
            repo = f"{'models' if shape == 'artifact' else 'modelcars'}/fraud-detector"
            refs[(shape, version)] = publish(registry, repo, version, model, shape=shape)["digest"]
    return refs


def test_publish_is_reproducible_and_idempotent(registry, published, sample_models):
    again = publish(registry, "models/fraud-detector", "1.0", sample_models[("fraud-detector", "1.0")])
    assert again["changed"] is False and again["pushed_bytes"] == 0
    assert again["digest"] == published[("artifact", "1.0")]
    check = run_module("model_publish", registry.args(
        registry=registry.url, repository="models/fraud-detector", tag="1.0",
        model=str(sample_models[("fraud-detector", "1.1")] / "model.onnx")), check_mode=True)
    assert check["changed"] is True and check["pushed_bytes"] == 0


@pytest.mark.parametrize("shape", ["artifact", "modelcar"])
def test_sync_both_shapes_check_apply_idempotent(registry, published, tmp_path, shape):
    repo = f"{'models' if shape == 'artifact' else 'modelcars'}/fraud-detector"
    store = tmp_path / "store"
    check = sync(registry, store, name="fraud", ref=f"{repo}:1.0", _ansible_check_mode=True)
    assert check["changed"] and check["bytes_downloaded"] > 0 and not store.exists()
    first = sync(registry, store, name="fraud", ref=f"{repo}:1.0")
    assert first["changed"] and first["shape"] == shape and first["source"] == registry.url
    assert first["digest"] == published[(shape, "1.0")]
    assert first["diff"]["after"]["active_digest"] == first["digest"]
    assert set(first["files"]) == {"model.onnx", "edgeml-model.json"}
    assert loads_and_answers(store, "fraud").endswith(first["digest"].split(":")[1])
    again = sync(registry, store, name="fraud", ref=f"{repo}:1.0")
    assert again["changed"] is False and again["bytes_downloaded"] == 0
    check_again = sync(registry, store, name="fraud", ref=f"{repo}:1.0", _ansible_check_mode=True)
    assert check_again["changed"] is False


def test_lab_registry_docker_modelcar_and_oras_artifact(tmp_path, sample_models):
    """The lab's images: pushed by docker (schema 2, gzip layers) and by oras."""
    root = Path(__file__).resolve().parents[2]
    args = {"registries": ["https://127.0.0.1:5000"], "username": "edgeml",
            "password": (root / "lab/.state/registry-password").read_text().strip(),
            "ca_path": str(root / "lab/.state/pki/ca.crt"), "store_dir": str(tmp_path)}
    for ref, shape in (("peers/docker/image-classifier:1.0", "modelcar"),
                       ("peers/oras/image-classifier:1.0", "artifact")):
        result = run_module("model_sync", dict(args, name=shape, ref=ref))
        assert not result.get("failed"), result
        assert result["shape"] == shape
        loads_and_answers(tmp_path, shape)


def test_index_resolves_to_the_host_platform(registry, tmp_path, sample_models):
    result = publish(registry, "modelcars/multi", "1.0", sample_models[("fraud-detector", "1.0")],
                     shape="modelcar", platforms=["linux/arm64/v8", "linux/amd64"])
    synced = sync(registry, tmp_path, name="multi", ref="modelcars/multi:1.0")
    assert synced["digest"] == result["digest"]  # the index digest is the version
    loads_and_answers(tmp_path, "multi")
    client = _registry.RegistryClient(registry.url, "tester", registry.password, ca_path=registry.ca)
    index = json.loads(client.get_manifest("modelcars/multi", "1.0")[0])
    assert index["mediaType"] == _oci.OCI_INDEX and len(index["manifests"]) == 2
    picked = _oci.choose_platform(index, "x", _oci.host_platform("aarch64"))
    assert picked["platform"]["architecture"] == "arm64"


def test_mirror_fallback_when_first_endpoint_is_down(registry, published, tmp_path):
    down = f"https://127.0.0.1:{free_port()}"
    result = sync(registry, tmp_path, name="fraud", ref="models/fraud-detector:1.0",
                  registries=[down, registry.url])
    assert result["changed"] and result["source"] == registry.url


def test_pinned_digest_and_rollback(registry, published, tmp_path):
    v1, v2 = published[("artifact", "1.0")], published[("artifact", "1.1")]
    sync(registry, tmp_path, name="fraud", ref="models/fraud-detector:1.0")
    up = sync(registry, tmp_path, name="fraud", ref="models/fraud-detector:1.1", digest=v2)
    assert up["digest"] == v2 and up["previous_digest"] == v1
    # A staged, pinned version needs no registry at all.
    offline = run_module("model_sync", {"name": "fraud", "ref": "models/fraud-detector:1.1",
                                        "digest": v2, "store_dir": str(tmp_path)})
    assert offline["changed"] is False and offline["source"] == "store"
    back = sync(registry, tmp_path, name="fraud", state="rollback")
    assert back["changed"] and back["digest"] == v1
    assert loads_and_answers(tmp_path, "fraud").endswith(v1.split(":")[1])
    again = sync(registry, tmp_path, name="fraud", state="rollback")
    assert again["changed"] is False and again["digest"] == v1
    info = run_module("model_info", {"store_dir": str(tmp_path), "verify": True})
    assert info["intact"] and info["models"]["fraud"]["current"] == v1
    assert {v["digest"] for v in info["models"]["fraud"]["versions"]} == {v1, v2}


def test_token_auth(token_registry, sample_models, tmp_path):
    result = publish(token_registry, "models/fraud-detector", "1.0",
                     sample_models[("fraud-detector", "1.0")])
    synced = sync(token_registry, tmp_path, name="fraud", ref="models/fraud-detector:1.0")
    assert synced["digest"] == result["digest"]
    assert token_registry.issuer.requests >= 2
    loads_and_answers(tmp_path, "fraud")
    bad = run_module("model_sync", dict(token_registry.args(password="wrong"),
                                        registries=[token_registry.url], store_dir=str(tmp_path),
                                        name="fraud", ref="models/fraud-detector:1.1"))
    assert bad["failed"] and "refused the credentials" in bad["msg"]
    assert "wrong" not in json.dumps(bad)


# --- faults: each asserts the message and that the active version still serves -----------

@pytest.fixture
def active_v1(registry, published, tmp_path):
    store = tmp_path / "store"
    assert sync(registry, store, name="fraud", ref="models/fraud-detector:1.0")["changed"]
    return store, published[("artifact", "1.0")]


def assert_still_v1(store, v1):
    assert loads_and_answers(store, "fraud").endswith(v1.split(":")[1])


@pytest.mark.parametrize("args,fragment", [
    ({"password": "wrong"}, "unauthorized (HTTP 401)"),
    ({"ref": "models/fraud-detector:9.9"}, "not found (HTTP 404)"),
    ({"ref": "models/no-such-model:1.0"}, "HTTP 404"),
    ({"ca_path": "/etc/ssl/certs/ca-certificates.crt"}, "TLS failed"),
    ({"registries": ["https://127.0.0.1:9"]}, "unreachable"),
    ({"ref": "Models/Bad Name"}, "is not a repository name"),
])
def test_registry_faults_keep_active_version(registry, active_v1, args, fragment):
    store, v1 = active_v1
    call = dict(name="fraud", ref="models/fraud-detector:1.1")
    call.update(args)
    result = sync(registry, store, **call)
    assert result.get("failed"), result
    assert fragment in result["msg"], result["msg"]
    assert registry.password not in json.dumps(result)
    assert_still_v1(store, v1)


def test_corrupt_blob_in_registry_is_refused(registry, sample_models, active_v1, tmp_path):
    store, v1 = active_v1
    model = tmp_path / "corrupt"
    model.mkdir()
    for name in ("model.onnx", "edgeml-model.json"):
        (model / name).write_bytes((sample_models[("fraud-detector", "1.1")] / name).read_bytes())
    (model / "edgeml-model.json").write_text((model / "edgeml-model.json").read_text() + " ")
    digest = publish(registry, "models/corrupt", "1", model)["digest"]
    client = _registry.RegistryClient(registry.url, "tester", registry.password, ca_path=registry.ca)
    manifest = json.loads(client.get_manifest("models/corrupt", digest)[0])
    blob = registry.blob_data_path(manifest["layers"][1]["digest"])
    data = bytearray(blob.read_bytes())
    data[0] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = sync(registry, store, name="fraud", ref="models/corrupt:1")
    assert result["failed"] and "failed verification" in result["msg"]
    assert_still_v1(store, v1)
    assert not list((store / "blobs" / "sha256").glob("*.partial"))


def test_disk_full_is_refused_before_writing(registry, sample_models, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        assert sync(registry, mount, name="fraud", ref="models/fraud-detector:1.0")["changed"]
        weights = big_file(tmp_path / "weights.bin", 4 << 20)
        publish(registry, "models/fat", "1", sample_models[("fraud-detector", "1.1")],
                extra_files=[str(weights)])
        result = sync(registry, mount, name="fraud", ref="models/fat:1")
        assert result["failed"] and "not enough disk" in result["msg"], result["msg"]
        assert "active version is untouched" in result["msg"]
        loads_and_answers(mount, "fraud")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture(scope="module")
def fat_model(registry, sample_models, tmp_path_factory):
    """fraud-detector 1.1 plus 48 MiB of external weights, published behind a slow link."""
    directory = tmp_path_factory.mktemp("fat")
    weights = big_file(directory / "weights.bin", 48 << 20)
    result = publish(registry, "models/fat-fraud", "1.1", sample_models[("fraud-detector", "1.1")],
                     extra_files=[str(weights)])
    return result["digest"], weights.stat().st_size


def partial_bytes(store):
    total = 0
    for path in (store / "blobs/sha256").glob("*.partial"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass  # complete and renamed since the glob
    return total


@pytest.mark.parametrize("kill_at", [0.0, 0.3, 0.6, 0.9])
def test_kill_9_then_rerun_resumes(registry, active_v1, fat_model, kill_at):
    store, v1 = active_v1
    digest, size = fat_model
    link = FlakyLink(registry.port, rate=40 << 20)  # 40 MiB/s: slow enough to kill on time
    try:
        args = registry.args(registries=[link.url], store_dir=str(store), name="fraud",
                             ref="models/fat-fraud:1.1", _ansible_check_mode=False)
        proc = subprocess.Popen(module_command("model_sync", args), env=module_env(),  # pylint: disable=consider-using-with
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            partial = partial_bytes(store)
            if partial >= kill_at * size and (kill_at == 0.0 or partial > 0):
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_still_v1(store, v1)  # never a mix: the old version serves
        rerun = sync(registry, store, name="fraud", ref="models/fat-fraud:1.1",
                     registries=[link.url])
        assert not rerun.get("failed"), rerun
        assert rerun["digest"] == digest and rerun["changed"]
        assert link.bytes_to_client <= 1.05 * size + (1 << 20), (link.bytes_to_client, size)
        info = run_module("model_info", {"store_dir": str(store), "verify": True})
        assert info["intact"], info["problems"]
        assert not list((store / "fraud" / "versions").glob(".staging-*"))
    finally:
        link.close()


def test_link_cut_midway_resumes_in_same_run(registry, active_v1, fat_model):
    store, _v1 = active_v1
    digest, size = fat_model
    link = FlakyLink(registry.port, cut_after=size // 2)
    try:
        result = sync(registry, store, name="fraud", ref="models/fat-fraud:1.1",
                      registries=[link.url])
        assert not result.get("failed"), result
        assert result["digest"] == digest
        assert result["bytes_downloaded"] <= 1.05 * size
    finally:
        link.close()


# --- hostile modelcar layers ------------------------------------------------------------

def _tar_layer(build):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        build(tar)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _file(tar, name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _special(tar, name, kind, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    tar.addfile(info)


def _bomb(tar):
    info = tarfile.TarInfo("models/weights.bin")
    info.size = 64 << 20
    tar.addfile(info, io.BytesIO(bytes(64 << 20)))


HOSTILE = {
    "path traversal": (lambda t: _file(t, "models/../../../tmp/edgeml-evil"), "climbs out"),
    "absolute path": (lambda t: _file(t, "/models/evil"), "absolute"),
    "escaping symlink": (lambda t: _special(t, "models/etc", tarfile.SYMTYPE, "../../../../etc"),
                         "points outside"),
    "absolute symlink": (lambda t: _special(t, "models/passwd", tarfile.SYMTYPE, "/etc/passwd"),
                         "points outside"),
    "escaping hard link": (lambda t: _special(t, "models/shadow", tarfile.LNKTYPE, "etc/shadow"),
                           "hard link"),
    "device file": (lambda t: _special(t, "models/sda", tarfile.CHRTYPE), "device"),
    "oversized (bomb)": (_bomb, "unpacks to more than"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_layers_are_refused(registry, active_v1, case):
    store, v1 = active_v1
    build, fragment = HOSTILE[case]
    client = _registry.RegistryClient(registry.url, "tester", registry.password, ca_path=registry.ca)
    layer = _tar_layer(build)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"os": "linux", "architecture": "amd64",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.push_blob("modelcars/hostile", layer_digest, layer, len(layer))
    client.push_blob("modelcars/hostile", config_digest, config, len(config))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": _oci.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": len(layer)}]}).encode()
    tag = case.replace(" ", "-").replace("(", "").replace(")", "")
    client.put_manifest("modelcars/hostile", tag, manifest, _oci.OCI_MANIFEST)
    result = sync(registry, store, name="fraud", ref=f"modelcars/hostile:{tag}",
                  max_extract_bytes=16 << 20)
    assert result.get("failed"), result
    assert fragment in result["msg"], result["msg"]
    assert not os.path.exists("/tmp/edgeml-evil")
    assert not list((store / "fraud" / "versions").glob(".staging-*"))
    assert_still_v1(store, v1)


def test_sync_from_an_oci_layout_made_by_skopeo(registry, published, tmp_path):
    """The offline path: an OCI image layout (as in a bundle), written by a peer tool."""
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(Path(registry.ca).read_bytes())
    layout = tmp_path / "layout"
    for repo in ("models/fraud-detector", "modelcars/fraud-detector"):
        subprocess.run(["skopeo", "copy", "-q", "--src-creds", f"tester:{registry.password}",
                        "--src-cert-dir", str(certs), f"docker://{registry.url[8:]}/{repo}:1.0",
                        f"oci:{layout}:{repo}:1.0"], check=True)
    store = tmp_path / "store"
    for repo, shape in (("models/fraud-detector", "artifact"), ("modelcars/fraud-detector", "modelcar")):
        result = run_module("model_sync", {"name": shape, "ref": f"{repo}:1.0",
                                           "registries": [f"oci-layout:{layout}"],
                                           "store_dir": str(store)})
        assert not result.get("failed"), result
        assert result["source"] == f"oci-layout:{layout}" and result["shape"] == shape
        assert result["digest"] == published[(shape, "1.0")]
        loads_and_answers(store, shape)
    missing = run_module("model_sync", {"name": "x", "ref": "models/fraud-detector:9.9",
                                        "registries": [f"oci-layout:{layout}"],
                                        "store_dir": str(store)})
    assert missing["failed"] and "has no image named models/fraud-detector:9.9" in missing["msg"]
