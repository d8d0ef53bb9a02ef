"""The host model store: atomic switching, retention, garbage collection, safe extraction."""

import gzip
import hashlib
import json
import os
import tarfile
import time

import pytest

from tar_members import tar_bytes
from ansible_collections.edgeml.fleet.plugins.module_utils import _store
from ansible_collections.edgeml.fleet.plugins.module_utils._store import (
    HostileLayer, Store, StoreBusy, StoreError)


def put_blob(store, data):
    store.ensure_dirs()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(store.blob_path(digest), "wb") as out:
        out.write(data)
    return {"digest": digest, "size": len(data)}


def stage_artifact(store, model, content, tag):
    layer = put_blob(store, content)
    layer["annotations"] = {"org.opencontainers.image.title": "model.onnx"}
    digest = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
    store.stage(model, digest, {"shape": "artifact", "blobs": [layer["digest"]]},
                lambda tmp: store.link_artifact_files([layer], tmp))
    return digest


def test_activate_rollback_and_links(tmp_path):
    store = Store(str(tmp_path))
    v1 = stage_artifact(store, "m", b"one", "v1")
    v2 = stage_artifact(store, "m", b"two", "v2")
    assert store.activate("m", v1) is None
    assert store.activate("m", v2) == v1
    assert (store.current("m"), store.previous("m")) == (v2, v1)
    assert (tmp_path / "m" / "current" / "model.onnx").read_bytes() == b"two"
    store.rollback("m", store.previous("m"))
    assert (store.current("m"), store.previous("m")) == (v1, None)  # v2 is no rollback target
    assert store.has_version("m", v2)
    assert oct(os.stat(tmp_path / "m").st_mode & 0o777) == "0o750"


def test_prune_keeps_current_and_previous_and_gc_frees_blobs(tmp_path):
    store = Store(str(tmp_path))
    digests = [stage_artifact(store, "m", f"v{i}".encode(), f"t{i}") for i in range(5)]
    store.activate("m", digests[0])
    store.activate("m", digests[1])
    removed = store.prune("m", keep=1)
    assert set(removed) == set(digests[2:4])  # digests[4] is newest: kept by keep=1
    assert {version[0] for version in store.versions("m")} == {digests[0], digests[1], digests[4]}
    assert store.collect_garbage() == 4  # b"v2", b"v3" are 2 bytes each
    assert store.referenced_blobs() == {"sha256:" + hashlib.sha256(f"v{i}".encode()).hexdigest()
                                        for i in (0, 1, 4)}


def test_verify_version_finds_altered_files(tmp_path):
    store = Store(str(tmp_path))
    digest = stage_artifact(store, "m", b"weights", "v1")
    assert store.verify_version("m", digest) == []
    path = os.path.join(store.version_dir("m", digest), "model.onnx")
    with open(path, "r+b") as out:  # same size, other bytes: only a full hash sees it
        out.write(b"W")
    assert "does not match" in store.verify_version("m", digest)[0]
    assert store.version_intact("m", digest)
    with open(path, "ab") as out:
        out.write(b"!")
    assert "is not the file of 7 bytes" in store.verify_version("m", digest)[0]
    assert not store.version_intact("m", digest)


def test_a_version_with_a_symlink_verifies(tmp_path):
    store = Store(str(tmp_path))
    digest = stage_artifact(store, "m", b"weights", "v1")
    vdir = store.version_dir("m", digest)
    os.symlink("model.onnx", os.path.join(vdir, "alias.onnx"))
    record = store.read_record(vdir)
    record["files"]["alias.onnx"] = {"link": "model.onnx"}
    with open(os.path.join(vdir, ".edgeml-version.json"), "w", encoding="utf-8") as out:
        json.dump(record, out)
    assert store.verify_version("m", digest) == [] and store.version_intact("m", digest)
    os.unlink(os.path.join(vdir, "alias.onnx"))
    os.symlink("/etc/passwd", os.path.join(vdir, "alias.onnx"))
    assert "is not the link" in store.verify_version("m", digest)[0]
    assert not store.version_intact("m", digest)


def test_failed_staging_leaves_nothing(tmp_path):
    store = Store(str(tmp_path))

    def boom(tmp):
        with open(os.path.join(tmp, "half"), "w") as out:
            out.write("x")
        raise StoreError("boom")

    with pytest.raises(StoreError):
        store.stage("m", "sha256:" + "0" * 64, {}, boom)
    assert os.listdir(tmp_path / "m" / "versions") == []


@pytest.mark.parametrize("title", ["../evil", ".hidden", "a/b", ".."])
def test_artifact_titles_cannot_escape(tmp_path, title):
    store = Store(str(tmp_path))
    layer = put_blob(store, b"x")
    layer["annotations"] = {"org.opencontainers.image.title": title}
    with pytest.raises(HostileLayer):
        store.link_artifact_files([layer], str(tmp_path))


def tar_layer(store, members, compress=True):
    data = gzip.compress(tar_bytes(members), mtime=0) if compress else tar_bytes(members)
    return put_blob(store, data)


def test_modelcar_layers_apply_in_order_with_whiteouts(tmp_path):
    store = Store(str(tmp_path / "s"))
    first = tar_layer(store, [("models/model.onnx", tarfile.REGTYPE, b"old"),
                              ("models/stale.bin", tarfile.REGTYPE, b"x"),
                              ("etc/passwd", tarfile.REGTYPE, b"ignored: outside /models")])
    second = tar_layer(store, [("models/model.onnx", tarfile.REGTYPE, b"new"),
                               ("models/.wh.stale.bin", tarfile.REGTYPE, b""),
                               ("models/alias.onnx", tarfile.SYMTYPE, "model.onnx"),
                               ("models/copy.onnx", tarfile.LNKTYPE, "models/model.onnx")],
                       compress=False)
    target = tmp_path / "out"
    target.mkdir()
    files = store.extract_modelcar([first, second], str(target))
    assert sorted(files) == ["alias.onnx", "copy.onnx", "model.onnx"]
    assert (target / "model.onnx").read_bytes() == b"new"
    assert (target / "copy.onnx").read_bytes() == b"new"
    assert os.readlink(target / "alias.onnx") == "model.onnx"


@pytest.mark.parametrize("members,fragment", [
    ([("models/../../x", tarfile.REGTYPE, b"x")], "climbs out"),
    ([("/models/x", tarfile.REGTYPE, b"x")], "absolute"),
    ([("models/l", tarfile.SYMTYPE, "/etc/passwd")], "points outside"),
    ([("models/l", tarfile.SYMTYPE, "../../etc")], "points outside"),
    ([("models/d", tarfile.SYMTYPE, ".."), ("models/d/x", tarfile.REGTYPE, b"x")], "points outside"),
    ([("models/h", tarfile.LNKTYPE, "etc/shadow")], "hard link"),
    ([("models/h", tarfile.LNKTYPE, "models/../../etc/shadow")], "hard link"),
    ([("models/dev", tarfile.CHRTYPE, "")], "device"),
    ([("models/fifo", tarfile.FIFOTYPE, "")], "device or FIFO"),
])
def test_hostile_members(tmp_path, members, fragment):
    store = Store(str(tmp_path / "s"))
    layer = tar_layer(store, members)
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(HostileLayer, match=fragment):
        store.extract_modelcar([layer], str(target))
    assert not (tmp_path / "x").exists()


def test_size_limit(tmp_path):
    store = Store(str(tmp_path / "s"))
    layer = tar_layer(store, [("models/big", tarfile.REGTYPE, bytes(2048))])
    with pytest.raises(HostileLayer, match="unpacks to more than 1024"):
        store.extract_modelcar([layer], str(tmp_path), max_bytes=1024)


def test_not_a_tar(tmp_path):
    store = Store(str(tmp_path / "s"))
    with pytest.raises(HostileLayer):
        store.extract_modelcar([put_blob(store, b"garbage" * 100)], str(tmp_path))


# -- integrity under crashes and concurrency ------------------------------------------------
@pytest.mark.parametrize("name", ["blobs", ".hidden", "..", "a/b", "", "A", "x" * 64])
def test_reserved_and_bad_model_names_are_refused(tmp_path, name):
    store = Store(str(tmp_path))
    with pytest.raises(StoreError):
        store.model_dir(name)


def test_absent_on_a_reserved_name_cannot_delete_the_blob_store(tmp_path):
    store = Store(str(tmp_path))
    layer = put_blob(store, b"model bytes")
    with pytest.raises(StoreError, match="reserved"):
        store.remove("blobs")
    assert store.has_blob(layer["digest"])


def test_a_second_writer_waits_for_the_lock_then_fails_clearly(tmp_path):
    store = Store(str(tmp_path))
    with store.lock(timeout=1):
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="locked by another run.*Nothing was changed"):
            with Store(str(tmp_path)).lock(timeout=0.5):
                pass
        assert time.monotonic() - started >= 0.5
    with store.lock(timeout=0.5):  # released when the holder is done
        pass


def test_reused_blob_size_is_always_checked(tmp_path):
    """A power cut can leave a verified name on zero bytes: it is found and removed."""
    store = Store(str(tmp_path))
    layer = put_blob(store, b"model bytes")
    store.mark_verified([layer["digest"]])
    assert store.blob_ok(layer["digest"], layer["size"])
    with open(store.blob_path(layer["digest"]), "wb"):
        pass  # truncated to zero, name kept
    assert not store.blob_ok(layer["digest"], layer["size"], repair=False)
    assert store.has_blob(layer["digest"])  # check mode: reported, nothing removed
    assert not store.blob_ok(layer["digest"], layer["size"])
    assert not store.has_blob(layer["digest"])  # removed, so the next sync fetches it again


def test_reused_blob_is_rehashed_when_written_after_verification(tmp_path):
    store = Store(str(tmp_path))
    layer = put_blob(store, b"model bytes")
    store.mark_verified([layer["digest"]])
    path = store.blob_path(layer["digest"])
    with open(path, "r+b") as handle:  # same size, other bytes, newer mtime
        handle.write(b"M")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not store.blob_ok(layer["digest"], layer["size"])
    assert not store.has_blob(layer["digest"])


def test_unrecorded_blob_is_hashed_once_then_trusted_by_its_record(tmp_path, monkeypatch):
    store = Store(str(tmp_path))
    layer = put_blob(store, b"model bytes")
    assert store.blob_ok(layer["digest"], layer["size"])  # hashed and recorded
    calls = []
    monkeypatch.setattr(_store, "sha256_file", lambda *a: calls.append(a))
    assert store.blob_ok(layer["digest"], layer["size"])
    assert not calls  # the record matched: no second hashing pass


def test_verify_blobs_names_a_blob_that_does_not_match(tmp_path):
    store = Store(str(tmp_path))
    layer = put_blob(store, b"model bytes")
    assert store.verify_blobs() == []
    with open(store.blob_path(layer["digest"]), "r+b") as handle:
        handle.write(b"X")
    assert store.verify_blobs() == [f"blob {layer['digest']} does not match its name"]


def test_a_damaged_version_is_staged_again(tmp_path):
    store = Store(str(tmp_path))
    digest = stage_artifact(store, "m", b"one", "v1")
    store.activate("m", digest)
    assert store.version_intact("m", digest)
    target = os.path.join(store.version_dir("m", digest), "model.onnx")
    os.unlink(target)
    with open(target, "wb"):
        pass
    assert not store.version_intact("m", digest)
    layer = put_blob(store, b"one")
    layer["annotations"] = {"org.opencontainers.image.title": "model.onnx"}
    store.stage("m", digest, {"shape": "artifact", "blobs": [layer["digest"]]},
                lambda tmp: store.link_artifact_files([layer], tmp))
    assert store.version_intact("m", digest)
    assert (tmp_path / "m" / "current" / "model.onnx").read_bytes() == b"one"
    assert not [n for n in os.listdir(tmp_path / "m" / "versions") if n.startswith(".")]


def test_ownership_drift_is_a_change_and_check_mode_only_reports_it(tmp_path):
    store = Store(str(tmp_path))
    digest = stage_artifact(store, "m", b"one", "v1")
    store.activate("m", digest)
    uid, gid = os.getuid(), os.getgid()
    store.settle_ownership("m", uid, gid)  # the test's own tmp_path is 0755
    assert not store.settle_ownership("m", uid, gid)  # settled: nothing to do
    path = os.path.join(store.version_dir("m", digest), "model.onnx")
    os.chmod(path, 0o666)
    assert store.settle_ownership("m", uid, gid, apply=False)
    assert os.stat(path).st_mode & 0o777 == 0o666  # check mode changed nothing
    assert store.settle_ownership("m", uid, gid)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert not store.settle_ownership("m", uid, gid)


def test_a_staging_leftover_with_its_record_is_not_a_version(tmp_path):
    """A kill after the record was written but before the rename leaves .staging-… with a
    record; it was listed as version 'sha256:.staging-…', and pruning then failed every run."""
    store = Store(str(tmp_path))
    digest = stage_artifact(store, "m", b"one", "v1")
    store.activate("m", digest)
    leftover = os.path.join(tmp_path, "m", "versions", ".staging-killed")
    os.mkdir(leftover)
    with open(os.path.join(leftover, ".edgeml-version.json"), "w", encoding="utf-8") as out:
        json.dump({"staged_at": 0, "blobs": [], "files": {}}, out)
    assert [d for d, _r in store.versions("m")] == [digest]
    assert store.prune("m", keep=1) == []


def test_collect_garbage_removes_only_blob_names(tmp_path):
    store = Store(str(tmp_path))
    layer = put_blob(store, b"orphan")
    for name in ("notes.txt", "a" * 64 + ".partial", "b" * 64 + ".partial"):
        with open(os.path.join(store.blobs, name), "wb") as out:
            out.write(b"x")
    os.mkdir(os.path.join(store.blobs, "c" * 64))
    store.collect_garbage(keep=["sha256:" + "b" * 64])
    assert sorted(os.listdir(store.blobs)) == ["b" * 64 + ".partial", "c" * 64, "notes.txt"]
    assert not store.has_blob(layer["digest"])


def test_artifact_titles_must_be_unique(tmp_path):
    """With two layers of one title, the copy that followed the failed second link wrote the
    second blob through the first link, into the first blob."""
    store = Store(str(tmp_path))
    first, second = put_blob(store, b"first"), put_blob(store, b"second")
    for layer in (first, second):
        layer["annotations"] = {"org.opencontainers.image.title": "model.onnx"}
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(HostileLayer, match="two files of one name"):
        store.link_artifact_files([first, second], str(target))
    assert open(store.blob_path(first["digest"]), "rb").read() == b"first"
