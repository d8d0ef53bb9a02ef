"""Pull mode's artifact rules: the names a pulled manifest may give its files, and what a push
takes from a directory. A name the checks accept can only ever be a path under the bundle."""

import hashlib
import json
import os
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.edgeml.fleet.plugins.module_utils._artifact import (
    BUNDLE_TYPE, REPORT_TYPE, NotTheArtifact, check_name, checked_layers, file_layers, manifest_body)
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import TITLE, OCIError

DIGEST = "sha256:" + "ab" * 32


def layer(name, size=1):
    return {"mediaType": "application/vnd.edgeml.file", "digest": DIGEST, "size": size,
            "annotations": {TITLE: name}}


def manifest(*names, artifact_type=BUNDLE_TYPE):
    return {"artifactType": artifact_type, "layers": [layer(name) for name in names]}


# Names built from the characters that matter to a path: separators, dots, NUL, newlines,
# backslashes, non-ASCII look-alikes, and plain letters.
PIECES = st.text(alphabet="a./\\\x00\n~-_é ‥", max_size=12)


@settings(max_examples=400, deadline=None)
@given(PIECES)
def test_an_accepted_name_is_a_path_under_the_bundle(name):
    try:
        check_name(name, "test")
    except OCIError:
        return
    root = "/bundle"
    joined = posixpath.normpath(posixpath.join(root, name))
    assert joined.startswith(root + "/") and joined == posixpath.join(root, name)
    assert all(part not in ("", ".", "..") for part in name.split("/"))
    assert not set(name) & set("\\\x00\n é‥")  # only the plain characters, none at the end either


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "a/./b", ".", "..", "",
                                  "a//b", "a/", "a\\..\\b", "a\x00b", "ok/" * 17 + "x", None, 7,
                                  "a\n", "SHA256SUMS\n", "/".join(["y" * 200] * 6)])
def test_crafted_names_are_refused(name):
    with pytest.raises(OCIError, match="not a plain relative path"):
        check_name(name, "layers[0]")


def test_a_plain_nested_name_is_kept():
    assert check_name("images/blobs/sha256/" + "ab" * 32, "x") == "images/blobs/sha256/" + "ab" * 32


@pytest.mark.parametrize("names", [("a", "a"), ("a", "a/b"), ("a/b", "a"), ("a/b/c", "a/b")])
def test_a_name_twice_or_file_and_directory_is_refused(names):
    with pytest.raises(OCIError, match="named twice, or as both"):
        checked_layers(manifest(*names), BUNDLE_TYPE, "t", 1 << 30)


def test_the_size_limit_counts_every_file_before_any_is_fetched():
    doc = {"artifactType": BUNDLE_TYPE, "layers": [layer("a", 600), layer("b", 600)]}
    with pytest.raises(OCIError, match="more than 1000 bytes"):
        checked_layers(doc, BUNDLE_TYPE, "t", 1000)
    assert checked_layers(doc, BUNDLE_TYPE, "t", 1200) == [("a", DIGEST, 600), ("b", DIGEST, 600)]


def test_another_artifact_type_or_an_index_is_not_the_artifact():
    with pytest.raises(NotTheArtifact):
        checked_layers(manifest("a", artifact_type=REPORT_TYPE), BUNDLE_TYPE, "t", 1 << 30)
    with pytest.raises(NotTheArtifact):
        checked_layers(dict(manifest("a"), manifests=[]), BUNDLE_TYPE, "t", 1 << 30)


def test_a_pushed_directory_is_what_a_pull_accepts(tmp_path):
    (tmp_path / "images" / "blobs").mkdir(parents=True)
    (tmp_path / "images" / "blobs" / "x").write_bytes(b"blob")
    (tmp_path / "SHA256SUMS").write_text("sums\n")
    layers = [entry for entry, _path in file_layers(tmp_path)]
    assert [entry["annotations"][TITLE] for entry in layers] == ["SHA256SUMS", "images/blobs/x"]
    assert layers[1]["digest"] == "sha256:" + hashlib.sha256(b"blob").hexdigest()
    body = manifest_body(layers, BUNDLE_TYPE)
    assert body == manifest_body(layers, BUNDLE_TYPE)  # the same files, the same digest
    assert [name for name, _d, _s in checked_layers(json.loads(body), BUNDLE_TYPE, "t", 1 << 20)] == \
        ["SHA256SUMS", "images/blobs/x"]


@pytest.mark.parametrize("make", ["link", "fifo", "odd-name"])
def test_a_link_special_file_or_odd_name_is_never_pushed(tmp_path, make):
    (tmp_path / "ok").write_text("ok")
    if make == "link":
        os.symlink("/etc/shadow", tmp_path / "secret")
    elif make == "fifo":
        os.mkfifo(tmp_path / "pipe")
    else:
        (tmp_path / "sp ace").write_text("x")
    with pytest.raises(OCIError):
        file_layers(tmp_path)
