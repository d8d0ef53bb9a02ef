"""The store's record of rejected versions: record, read, forget; hostile names and digests."""

import hashlib
import os

import pytest

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import BadDigest
from ansible_collections.edgeml.fleet.plugins.module_utils import _store
from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store, StoreError

DIGEST = "sha256:" + hashlib.sha256(b"v1").hexdigest()


def test_record_read_and_forget(tmp_path):
    store = Store(str(tmp_path))
    assert store.rejection("m", DIGEST) is None
    assert store.reject("m", DIGEST, "Health gate: golden cases answered wrong\n")
    assert store.rejection("m", DIGEST) == "Health gate: golden cases answered wrong"
    path = tmp_path / "m" / "rejected" / DIGEST[len("sha256:"):]
    assert path.read_text() == "Health gate: golden cases answered wrong\n"  # as the role wrote it
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o750"
    assert not store.reject("m", DIGEST, "Health gate: golden cases answered wrong")  # unchanged
    assert store.reject("m", DIGEST, "Verify: signature")  # a new reason replaces the old
    assert store.rejection("m", DIGEST) == "Verify: signature"
    assert store.forget_rejection("m", DIGEST)
    assert store.rejection("m", DIGEST) is None
    assert not store.forget_rejection("m", DIGEST)
    assert not os.listdir(path.parent)  # no temporary file left behind


def test_records_are_per_model_and_digest(tmp_path):
    store = Store(str(tmp_path))
    other = "sha256:" + hashlib.sha256(b"v2").hexdigest()
    store.reject("m", DIGEST, "bad")
    assert store.rejection("n", DIGEST) is None
    assert store.rejection("m", other) is None


def test_reason_is_capped(tmp_path):
    store = Store(str(tmp_path))
    store.reject("m", DIGEST, "é" * 100000)
    reason = store.rejection("m", DIGEST)
    assert len(reason.encode()) <= _store.MAX_REASON and set(reason) == {"é"}


def test_owner_and_group_are_given(tmp_path):
    store = Store(str(tmp_path))
    gid = os.getgid()
    store.reject("m", DIGEST, "bad", uid=os.getuid(), gid=gid)
    assert (tmp_path / "m" / "rejected" / DIGEST[7:]).stat().st_gid == gid


@pytest.mark.parametrize("name", ["../etc", "blobs", "", "A", "a/b", ".hidden", "m\0", "x" * 64])
def test_hostile_model_names_are_refused(tmp_path, name):
    store = Store(str(tmp_path))
    for call in (lambda: store.reject(name, DIGEST, "bad"), lambda: store.rejection(name, DIGEST),
                 lambda: store.forget_rejection(name, DIGEST)):
        with pytest.raises(StoreError):
            call()
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:00",
                                    DIGEST + "/x", DIGEST[7:], None, "sha256:" + "0" * 63])
def test_hostile_digests_are_refused(tmp_path, digest):
    store = Store(str(tmp_path))
    for call in (lambda: store.reject("m", digest, "bad"), lambda: store.rejection("m", digest),
                 lambda: store.forget_rejection("m", digest)):
        with pytest.raises(BadDigest):
            call()
    assert not (tmp_path / "m" / "rejected").exists()


def test_a_planted_link_is_refused(tmp_path):
    store = Store(str(tmp_path))
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "m").mkdir()
    os.symlink(outside, tmp_path / "m" / "rejected")
    with pytest.raises(StoreError, match="symlink"):
        store.reject("m", DIGEST, "bad")
    with pytest.raises(StoreError, match="symlink"):
        store.rejection("m", DIGEST)
    assert not os.listdir(outside)


def test_a_record_that_is_a_link_or_a_directory_is_refused(tmp_path):
    store = Store(str(tmp_path))
    secret = tmp_path / "secret"
    secret.write_text("root's secret")
    store.reject("m", DIGEST, "bad")
    record = tmp_path / "m" / "rejected" / DIGEST[7:]
    record.unlink()
    os.symlink(secret, record)
    with pytest.raises(StoreError, match="rejection record"):
        store.rejection("m", DIGEST)
    record.unlink()
    record.mkdir()
    with pytest.raises(StoreError, match="not a regular file"):
        store.rejection("m", DIGEST)


def test_rejections_lists_every_record(tmp_path):
    store = Store(str(tmp_path))
    other = "sha256:" + hashlib.sha256(b"v2").hexdigest()
    assert store.rejections("m") == {}
    store.reject("m", DIGEST, "one")
    store.reject("m", other, "two")
    (tmp_path / "m" / "rejected" / ".tmp-leftover").write_text("x")  # not a record
    assert store.rejections("m") == {DIGEST: "one", other: "two"}


def test_a_model_with_only_rejected_versions_is_listed_for_reports(tmp_path):
    # A first version that fails leaves only its record (the model's directory is otherwise
    # removed): model_info must still list it, or the next deploy tries the version again.
    store = Store(str(tmp_path))
    store.reject("m", DIGEST, "Verify: signature")
    assert store.models() == []  # nothing staged: garbage collection and the like skip it
    assert store.models(with_rejected=True) == ["m"]


def test_reason_loses_control_characters(tmp_path):
    store = Store(str(tmp_path))
    store.reject("m", DIGEST, "input \x1b[2J\x1b]0;pwned\x07 'x'\nline two\r\x00end")
    reason = store.rejection("m", DIGEST)
    assert reason.isprintable() and "\x1b" not in reason
    assert reason == "input [2J ]0;pwned 'x' line two end"


def test_only_the_newest_records_are_kept(tmp_path):
    # A registry can publish a new failing digest for every run: the records stay bounded.
    store = Store(str(tmp_path))
    digests = ["sha256:" + hashlib.sha256(str(n).encode()).hexdigest() for n in range(_store.MAX_REJECTED + 5)]
    for number, digest in enumerate(digests):
        store.reject("m", digest, f"failure {number}")
        path = tmp_path / "m" / "rejected" / digest[len("sha256:"):]
        os.utime(path, ns=(number * 10**9, number * 10**9))
    kept = store.rejections("m")
    assert len(kept) == _store.MAX_REJECTED
    assert set(kept) == set(digests[-_store.MAX_REJECTED:])


def test_a_records_directory_others_could_write_is_taken_back(tmp_path):
    store = Store(str(tmp_path))
    records = tmp_path / "m" / "rejected"
    records.mkdir(parents=True)
    records.chmod(0o777)  # as an older release or a local user might have left it
    store.reject("m", DIGEST, "bad")
    assert oct(records.stat().st_mode & 0o777) == "0o750"
