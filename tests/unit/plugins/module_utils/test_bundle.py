"""The offline bundle's checks: checksums, OCI layout, signatures (real ssh-keygen), chunks."""

import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle
from ansible_collections.edgeml.fleet.plugins.module_utils._bundle import BundleError
from synthetic_bundle import make_bundle, run_command as run


@pytest.fixture
def bundle(tmp_path):
    """A small sealed bundle: an OCI layout with one artifact image and a wheel."""
    root = tmp_path / "bundle"
    layers = make_bundle(root, [b"onnx bytes" * 100], os.urandom(5000))
    return root, layers[0]["digest"]


@pytest.fixture
def signer(tmp_path):
    key = tmp_path / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet", "-f", str(key)],
                   check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("fleet@example.com " + (tmp_path / "signing_key.pub").read_text())
    return key, allowed


def test_a_sealed_bundle_checks_out(bundle):
    root = bundle[0]
    # 3 blobs, oci-layout, index.json, the wheel archive, manifest.json
    assert _bundle.check_sums(root)[0] == 7
    index = json.loads((root / "images" / "index.json").read_text())
    assert _bundle.check_layout(root / "images") == {"models/m:1": index["manifests"][0]["digest"]}


def test_sums_format_is_what_sha256sum_reads(bundle):
    root = bundle[0]
    proc = subprocess.run(["sha256sum", "--strict", "-c", _bundle.SUMS], cwd=root,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("damage, named", [
    (lambda r: (r / "wheelhouse" / "runtime.tar").write_bytes(b"x"), "runtime.tar: checksum"),
    (lambda r: (r / "wheelhouse" / "runtime.tar").unlink(), "runtime.tar: missing"),
    (lambda r: (r / "wheelhouse" / "extra.whl").write_bytes(b"x"), "extra.whl: not in SHA256SUMS"),
    (lambda r: (r / _bundle.SUMS).unlink(), "has no SHA256SUMS"),
    (lambda r: (r / _bundle.SUMS).write_text("nonsense\n"), "line 1"),
    (lambda r: (r / _bundle.SUMS).write_text("0" * 64 + "  ../../etc/passwd\n"), "unsafe path"),
])
def test_damaged_bundles_are_refused_naming_the_file(bundle, damage, named):
    root = bundle[0]
    damage(root)
    with pytest.raises(BundleError, match=named):
        _bundle.check_sums(root)


def test_one_flipped_byte_in_a_blob_is_found(bundle):
    root, layer = bundle
    path = root / "images" / "blobs" / "sha256" / layer[7:]
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=layer[7:] + ": checksum mismatch"):
        _bundle.check_sums(root)


def test_layout_needs_every_blob_unless_omitted_on_purpose(bundle):
    root, layer = bundle
    (root / "images" / "blobs" / "sha256" / layer[7:]).unlink()
    with pytest.raises(BundleError, match="missing blob " + layer):
        _bundle.check_layout(root / "images")
    assert _bundle.check_layout(root / "images", omitted=[layer])


def test_layout_size_mismatch_is_named(bundle):
    root, layer = bundle
    (root / "images" / "blobs" / "sha256" / layer[7:]).write_bytes(b"short")
    with pytest.raises(BundleError, match="5 bytes"):
        _bundle.check_layout(root / "images")


def test_layout_reads_only_blobs_not_already_hashed(bundle):
    root, layer = bundle
    blob = root / "images" / "blobs" / "sha256" / layer[7:]
    blob.write_bytes(bytes(reversed(blob.read_bytes())))  # same size, other content
    with pytest.raises(BundleError, match="does not hash to its name " + layer):
        _bundle.check_layout(root / "images")
    # SHA256SUMS vouched for the blob (as bundle_verify checks it first): not read again
    hashed = _bundle.blobs_hashed(_bundle.read_sums(root / _bundle.SUMS))
    assert layer[7:] in hashed and len(hashed) == 3
    assert _bundle.check_layout(root / "images", hashed=hashed)
    # a file hashed under another name than its content's is not taken as hashed
    assert not _bundle.blobs_hashed({"images/blobs/sha256/" + "0" * 64: layer[7:]})


def test_a_symlink_in_a_bundle_is_refused(bundle):
    root = bundle[0]
    (root / "wheelhouse" / "link").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="link or a special file"):
        _bundle.list_files(root)


def test_signature_made_and_checked_with_ssh_keygen(bundle, signer):
    root = bundle[0]
    key, allowed = signer
    _bundle.sign(run, root, key)
    assert _bundle.verify_signature(run, root, allowed) == "fleet@example.com"
    # the checksum list altered after signing
    sums = root / _bundle.SUMS
    lines = sums.read_text().splitlines()
    sums.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(BundleError, match="does not match"):
        _bundle.verify_signature(run, root, allowed)


def test_signed_by_tells_whether_a_signature_can_be_kept(bundle, signer, tmp_path):
    root = bundle[0]
    key, _allowed = signer
    assert not _bundle.signed_by(run, root, key)  # unsigned
    _bundle.sign(run, root, key)
    assert _bundle.signed_by(run, root, key)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    assert not _bundle.signed_by(run, root, other)  # a rotated key signs anew
    (root / _bundle.SUMS).write_text((root / _bundle.SUMS).read_text() + "0" * 64 + "  new\n")
    assert not _bundle.signed_by(run, root, key)  # the list changed since
    assert not _bundle.signed_by(run, root, tmp_path / "no-such-key")


def test_a_stranger_s_signature_or_none_is_refused(bundle, signer, tmp_path):
    root = bundle[0]
    _key, allowed = signer
    with pytest.raises(BundleError, match="unsigned"):
        _bundle.verify_signature(run, root, allowed)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    _bundle.sign(run, root, other)
    with pytest.raises(BundleError, match="not made by a key in"):
        _bundle.verify_signature(run, root, allowed)
    with pytest.raises(BundleError, match="no allowed-signers file"):
        _bundle.verify_signature(run, root, tmp_path / "missing")


def test_chunks_round_trip_and_join_once(bundle, tmp_path):
    root = bundle[0]
    chunks = _bundle.split(root, tmp_path / "chunks", 4096)
    assert len(chunks) > 2 and all(c["size"] == 4096 for c in chunks[:-1])
    dest = tmp_path / "joined"
    assert _bundle.join(str(tmp_path / "chunks"), str(dest)) is True
    assert _bundle.check_sums(dest)[0] == _bundle.check_sums(root)[0]
    assert _bundle.join(str(tmp_path / "chunks"), str(dest)) is False


def test_a_bad_or_missing_chunk_is_named_and_nothing_unpacked(bundle, tmp_path):
    root = bundle[0]
    _bundle.split(root, tmp_path / "chunks", 4096)
    second = tmp_path / "chunks" / "bundle.tar.001"
    data = bytearray(second.read_bytes())
    data[0] ^= 1
    second.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="bundle.tar.001: checksum mismatch"):
        _bundle.join(str(tmp_path / "chunks"), str(tmp_path / "joined"))
    assert not (tmp_path / "joined").exists() and not (tmp_path / "joined.joining").exists()
    # damage where tar reads its headers: still the chunk is named, not a tar error
    first = tmp_path / "chunks" / "bundle.tar.000"
    data = bytearray(first.read_bytes())
    data[100:300] = bytes(200)
    first.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="bundle.tar.000: checksum mismatch"):
        _bundle.join(str(tmp_path / "chunks"), str(tmp_path / "joined"))
    assert not (tmp_path / "joined.joining").exists()
    second.unlink()
    with pytest.raises(BundleError, match="bundle.tar.001: missing chunk"):
        _bundle.check_chunks(str(tmp_path / "chunks"))


def test_a_chunk_stream_leaving_its_directory_is_refused(tmp_path):
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    data = buf.getvalue()
    (chunks / "bundle.tar.000").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (chunks / _bundle.CHUNKS).write_text(f"{digest}  bundle.tar.000\n{digest}  bundle.tar\n")
    with pytest.raises(BundleError, match="unsafe path"):
        _bundle.join(str(chunks), str(tmp_path / "joined"))
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("text, size", [("700M", 700 << 20), ("4G", 4 << 30), ("2048", 2048),
                                        ("1 KiB", 1024)])
def test_chunk_sizes(text, size):
    assert _bundle.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1M", "12", "3X"])
def test_bad_chunk_sizes(text):
    with pytest.raises(BundleError, match="chunk size"):
        _bundle.parse_size(text)
