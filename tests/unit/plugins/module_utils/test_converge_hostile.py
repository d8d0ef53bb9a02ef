"""The probe's reads on a host where the watched paths are not what they should be: it neither
hangs nor follows a link, and what it cannot vouch for is drift."""

import os
import threading

from ansible_collections.edgeml.fleet.plugins.module_utils import _converge


def _finishes(function, *args):
    """function(*args) in a daemon thread; its result, or a hang (a FIFO opened for reading blocks)."""
    box = []
    worker = threading.Thread(target=lambda: box.append(function(*args)), daemon=True)
    worker.start()
    worker.join(60)  # an upper bound only a hang reaches
    assert box, f"{function.__name__}{args} hangs"
    return box[0]


def test_a_fifo_at_the_token_path_does_not_hang_the_probe(tmp_path):
    os.mkfifo(tmp_path / "token")
    assert _finishes(_converge._token, str(tmp_path / "token")) is None


def test_a_link_at_the_token_path_is_not_followed(tmp_path):
    (tmp_path / "elsewhere").write_text("secret-of-someone-else\n")
    os.symlink(tmp_path / "elsewhere", tmp_path / "token")
    assert _converge._token(str(tmp_path / "token")) is None


def test_a_token_is_read(tmp_path):
    (tmp_path / "token").write_bytes(b"s3cret\n")
    assert _converge._token(str(tmp_path / "token")) == "s3cret"
    (tmp_path / "token").write_bytes(b"\xff\xfe\n")  # not UTF-8: a token that fails auth, not a crash
    assert _converge._token(str(tmp_path / "token"))
    assert _converge._token("") is None and _converge._token(str(tmp_path / "none")) is None


def test_an_oversized_token_file_is_not_read_as_a_token(tmp_path):
    (tmp_path / "token").write_bytes(b"x" * 4097)
    assert _converge._token(str(tmp_path / "token")) is None


def test_watched_files_that_are_fifos_links_or_huge_are_drift_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "real").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "link")
    with open(tmp_path / "huge", "wb") as handle:  # sparse: no disk used
        handle.truncate(_converge.MAX_WATCHED_BYTES + 1)
    assert _finishes(_converge.file_state, str(tmp_path / "fifo")) == "not a regular file"
    assert _converge.file_state(str(tmp_path / "link")) == "not a regular file"
    assert not _converge.file_state(str(tmp_path / "huge")).startswith("sha256:")
    assert _converge.file_state(str(tmp_path / "real")).startswith("sha256:")


def test_a_file_whose_mode_or_content_changed_is_drift(tmp_path):
    path = tmp_path / "serve.yml"
    path.write_text("a")
    before = _converge.file_state(str(path))
    path.chmod(0o666)
    assert _converge.file_state(str(path)) != before
    path.chmod(0o644)
    path.write_text("b")
    assert _converge.file_state(str(path)) != before
