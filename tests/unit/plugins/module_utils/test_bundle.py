"""The offline bundle's checks: checksums, OCI layout, signatures (real ssh-keygen), chunks."""

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle
from ansible_collections.edgeml.fleet.plugins.module_utils._bundle import BundleError
from synthetic_bundle import make_bundle, make_host_bundle, run_command as run, sign_bundle


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
    (chunks / _bundle.CHUNKS).write_text(f"{digest}  bundle.tar.000\n")
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


# --- chunk sets: a signed list, numeric order, regular files only, dest replaced when verified --

def signed_chunks(tmp_path, root, key, size=4096):
    chunks = tmp_path / "chunks"
    _bundle.split(root, chunks, size)
    sign_bundle(chunks, key, _bundle.CHUNKS)
    return chunks


def one_chunk(directory, data):
    """A chunk set of a single chunk holding data (a tar stream), listed but not signed."""
    directory.mkdir()
    (directory / "bundle.tar.000").write_bytes(data)
    (directory / _bundle.CHUNKS).write_text(f"{hashlib.sha256(data).hexdigest()}  bundle.tar.000\n")
    return directory


def tar_stream(*members):
    """A tar stream of (TarInfo, data or None) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name, kind=tarfile.REGTYPE, data=b"", **attrs):
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, (data if kind == tarfile.REGTYPE else None)


def sparse_stream(tmp_path, fmt):
    """GNU tar's sparse member: a 1 GiB file in some 10 KiB of stream."""
    src = tmp_path / "sparse-src"
    src.mkdir()
    with open(src / "big", "wb") as out:
        out.truncate(1 << 30)
    return subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", "-", "-C", str(src), "big"],
                          capture_output=True, check=True).stdout


def test_a_set_of_more_than_1000_chunks_joins_in_numeric_order(tmp_path, signer):
    root = tmp_path / "bundle"
    make_bundle(root, [os.urandom(1 << 20)], b"wheel")
    chunks = signed_chunks(tmp_path, root, signer[0], size=1024)
    names, _ident = _bundle.read_chunk_list(chunks)
    assert len(names) > 1000 and names[999][0] == "bundle.tar.999" and names[1000][0] == "bundle.tar.1000"
    assert _bundle.verify_signature(run, chunks, signer[1], _bundle.CHUNKS) == "fleet@example.com"
    assert _bundle.join(str(chunks), str(tmp_path / "joined"), _bundle.check_sums) is True
    assert _bundle.check_sums(tmp_path / "joined") == _bundle.check_sums(root)


def test_a_gap_in_the_chunk_numbers_is_refused(bundle, signer, tmp_path):
    chunks = signed_chunks(tmp_path, bundle[0], signer[0])
    listing = chunks / _bundle.CHUNKS
    listing.write_text("".join(line for line in listing.read_text().splitlines(True)
                               if "bundle.tar.001" not in line))
    with pytest.raises(BundleError, match=r"CHUNKS.SHA256: the chunks are not numbered .*bundle.tar.001"):
        _bundle.read_chunk_list(chunks)


def test_the_chunk_list_is_signed_and_checked(bundle, signer, tmp_path):
    chunks = signed_chunks(tmp_path, bundle[0], signer[0])
    assert _bundle.verify_signature(run, chunks, signer[1], _bundle.CHUNKS) == "fleet@example.com"
    listing = chunks / _bundle.CHUNKS
    listing.write_text(listing.read_text().replace("0", "1", 1))
    with pytest.raises(BundleError, match=r"CHUNKS.SHA256.sig: the signature does not match"):
        _bundle.verify_signature(run, chunks, signer[1], _bundle.CHUNKS)
    (chunks / (_bundle.CHUNKS + ".sig")).unlink()
    with pytest.raises(BundleError, match=r"CHUNKS.SHA256.sig: missing: the chunk list is unsigned"):
        _bundle.verify_signature(run, chunks, signer[1], _bundle.CHUNKS)


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_a_sparse_member_is_refused_without_writing_it(tmp_path, fmt):
    data = sparse_stream(tmp_path, fmt)
    assert len(data) < 64 << 10
    chunks = one_chunk(tmp_path / "chunks", data)
    with pytest.raises(BundleError, match=r"'big' is not a regular file or directory .*sparse"):
        _bundle.join(str(chunks), str(tmp_path / "joined"))
    assert not (tmp_path / "joined").exists() and not (tmp_path / "joined.joining").exists()


@pytest.mark.parametrize("info", [
    member("link", tarfile.SYMTYPE, linkname="/etc/passwd"),
    member("hard", tarfile.LNKTYPE, linkname="SHA256SUMS"),
    member("dev", tarfile.CHRTYPE, devmajor=1, devminor=3),
    member("fifo", tarfile.FIFOTYPE),
    member("contiguous", tarfile.CONTTYPE),
], ids=["symlink", "hard link", "device", "fifo", "contiguous"])
def test_links_devices_and_other_member_types_are_refused(tmp_path, info):
    chunks = one_chunk(tmp_path / "chunks", tar_stream(member("SHA256SUMS", data=b""), info))
    with pytest.raises(BundleError, match=f"'{info[0].name}' is not a regular file or directory"):
        _bundle.join(str(chunks), str(tmp_path / "joined"))
    assert not (tmp_path / "joined").exists() and not (tmp_path / "joined.joining").exists()


def test_a_member_larger_than_the_chunks_is_refused(tmp_path):
    info, _data = member("huge", data=b"")
    info.size = 1 << 30  # claimed, not carried
    buf = io.BytesIO()
    buf.write(info.tobuf(tarfile.GNU_FORMAT))
    chunks = one_chunk(tmp_path / "chunks", buf.getvalue() + bytes(1024))
    with pytest.raises(BundleError, match=r"'huge' takes the stream past the \d+ bytes its chunks hold"):
        _bundle.join(str(chunks), str(tmp_path / "joined"))
    assert not (tmp_path / "joined").exists()


def tree_digest(path):
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_failed_join_leaves_the_verified_destination_as_it_was(bundle, signer, tmp_path):
    root = bundle[0]
    _bundle.sign(run, root, signer[0])
    dest = tmp_path / "joined"
    good = signed_chunks(tmp_path, root, signer[0])

    def verify(path):
        _bundle.verify_signature(run, path, signer[1])
        _bundle.check_sums(path)

    assert _bundle.join(str(good), str(dest), verify)
    before = tree_digest(dest)
    # Another chunk set whose bundle does not verify (unsigned inside): dest stays.
    (root / _bundle.SIGNATURE).unlink()
    other = tmp_path / "other"
    _bundle.split(root, other, 4096)
    with pytest.raises(BundleError, match="SHA256SUMS.sig: missing"):
        _bundle.join(str(other), str(dest), verify)
    assert tree_digest(dest) == before and not (tmp_path / "joined.joining").exists()
    # A damaged chunk: dest stays.
    chunk = other / "bundle.tar.001"
    chunk.write_bytes(b"x" + chunk.read_bytes()[1:])
    with pytest.raises(BundleError, match="bundle.tar.001: checksum mismatch"):
        _bundle.join(str(other), str(dest), verify)
    assert tree_digest(dest) == before


def test_a_verified_join_replaces_the_destination(bundle, signer, tmp_path):
    root = bundle[0]
    dest = tmp_path / "joined"
    dest.mkdir()
    (dest / "stale").write_text("from an older bundle")
    assert _bundle.join(str(signed_chunks(tmp_path, root, signer[0])), str(dest), _bundle.check_sums)
    assert not (dest / "stale").exists() and _bundle.check_sums(dest)
    assert not (tmp_path / "joined.replaced").exists()


# --- bootstrap.sh: a hostile bundle corpus against its verification stage -----------------------
# bootstrap.sh runs here as on a host, with stand-ins for /opt/edgeml and /etc/edgeml (--prefix)
# and a store: each hostile bundle must be refused, naming the file, with nothing changed.

class Host:
    """Stand-ins for a host's /etc/edgeml (the trusted signers), /opt/edgeml, the store."""

    def __init__(self, tmp_path, allowed):
        self.root, self.tmp = tmp_path / "host", tmp_path / "tmp"
        (self.root / "etc" / "edgeml").mkdir(parents=True)
        (self.root / "etc" / "edgeml" / "bundle-signers").write_text(allowed.read_text())
        (self.root / "opt" / "edgeml").mkdir(parents=True)
        store = self.root / "var" / "lib" / "edgeml" / "models" / "blobs" / "sha256"
        store.mkdir(parents=True)
        (store / ("0" * 64)).write_bytes(b"a model in service")
        self.tmp.mkdir()

    def state(self):
        """Every file and link under the stand-ins, hashed; and the installed OS packages."""
        files = {str(p.relative_to(self.root)): p.is_symlink() or hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(self.root.rglob("*")) if p.is_file() or p.is_symlink()}
        dpkg = subprocess.run(["dpkg-query", "-W"], capture_output=True, text=True, check=False)
        return files, dpkg.stdout, sorted(os.listdir(self.tmp))

    def bootstrap(self, bundle, *args, script=None):
        argv = ["sh", str(script or bundle / "bootstrap.sh"), "--bundle", str(bundle),
                "--prefix", str(self.root), "--host", "edge-c1", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              env={"PATH": os.environ["PATH"], "TMPDIR": str(self.tmp)})


@pytest.fixture
def host(tmp_path, signer):
    return Host(tmp_path, signer[1])


@pytest.fixture
def host_bundle(tmp_path, signer):
    root = tmp_path / "usb" / "aurora"
    make_host_bundle(root)
    sign_bundle(root, signer[0])
    return root


def technician_check(bundle, allowed):
    """The two commands docs/offline.md gives a technician, as typed in the bundle's directory."""
    doc = (Path(__file__).resolve().parents[4] / "docs" / "offline.md").read_text()
    commands = re.findall(r"^(ssh-keygen -Y verify -f allowed_signers .*|sha256sum --strict .*)$",
                          doc, re.MULTILINE)
    assert len(commands) == 2, commands
    script = "\n".join(commands).replace("allowed_signers", str(allowed)).replace(
        "bundles@example.com", "fleet@example.com")
    return subprocess.run(["bash", "-e", "-c", script], cwd=bundle, capture_output=True,
                          text=True, check=False)


def test_bootstrap_checks_a_good_bundle_and_a_technician_too(host, host_bundle, signer):
    before = host.state()
    run_ = host.bootstrap(host_bundle, "--check")
    assert run_.returncode == 0, run_.stderr
    assert "signed by fleet@example.com, every file checks out" in run_.stdout
    assert host.state() == before  # and its working copy is gone
    tech = technician_check(host_bundle, signer[1])
    assert tech.returncode == 0, tech.stdout + tech.stderr


def _add(rel, data=b"x"):
    def damage(root, _tmp):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return damage


def _symlink(rel, target):
    def damage(root, _tmp):
        if (root / rel).exists():
            (root / rel).unlink()
        (root / rel).symlink_to(target)
    return damage


def _resign(root, tmp):
    stranger = tmp / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    sign_bundle(root, stranger)


HOSTILE = {
    # name: (damage, what bootstrap.sh's refusal names, extra arguments)
    "added wheel that sorts higher": (
        _add("ansible/x86_64-cp311/jinja2-9.9.9-py3-none-any.whl"),
        r"ansible/x86_64-cp311/jinja2-9\.9\.9-py3-none-any\.whl: not in SHA256SUMS", ()),
    "added .deb": (_add("packages/zz-evil_9.9_all.deb"), r"packages/zz-evil_9\.9_all\.deb: not in SHA256SUMS", ()),
    "added group_vars": (_add("inventory/group_vars/all.yml", b"offline_bundle_require_signature: false\n"),
                         r"inventory/group_vars/all\.yml: not in SHA256SUMS", ()),
    "added host_vars": (_add("inventory/host_vars/edge-c1.yml", b"ansible_python_interpreter: /tmp/x\n"),
                        r"inventory/host_vars/edge-c1\.yml: not in SHA256SUMS", ()),
    "ansible.cfg in the working directory": (_add("ansible.cfg", b"[defaults]\nlibrary = /tmp\n"),
                                             r"aurora/ansible\.cfg: not in SHA256SUMS", ()),
    "replaced bootstrap.sh": (_add("bootstrap.sh", b"#!/bin/sh\necho pwned\n"),
                              r"aurora/bootstrap\.sh: checksum mismatch", ("genuine",)),
    "symlink inside the bundle": (_symlink("wheelhouse/extra.whl", "/etc/passwd"),
                                  r"wheelhouse/extra\.whl: a bundle holds only regular files", ()),
    "listed file replaced by a symlink": (_symlink("wheelhouse/runtime.tar", "/etc/hostname"),
                                          r"wheelhouse/runtime\.tar: a bundle holds only regular files", ()),
    "signature by a key not in the host's signers": (_resign, r"aurora/SHA256SUMS\.sig is not made by a key in", ()),
    "unsigned": (lambda root, _tmp: (root / "SHA256SUMS.sig").unlink(), r"aurora/SHA256SUMS\.sig is missing", ()),
    "altered file list": (
        lambda root, _tmp: (root / "SHA256SUMS").write_text(
            (root / "SHA256SUMS").read_text() + "0" * 64 + "  extra\n"),
        r"aurora/SHA256SUMS\.sig: the signature does not match", ()),
    "bundle for another site": (lambda root, _tmp: None,
                                r"aurora/manifest\.json: this bundle is for edge-c1 \(sites site-c\), not edge-a1",
                                ("--host", "edge-a1")),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_bootstrap_refuses_a_hostile_bundle_and_changes_nothing(host, host_bundle, signer, tmp_path, case):
    damage, named, args = HOSTILE[case]
    genuine = tmp_path / "genuine-bootstrap.sh"  # a bootstrap.sh from a bundle checked before
    genuine.write_bytes((host_bundle / "bootstrap.sh").read_bytes())
    damage(host_bundle, tmp_path)
    before = host.state()
    script = genuine if "genuine" in args else None
    result = host.bootstrap(host_bundle, *[a for a in args if a != "genuine"], script=script)
    assert result.returncode != 0, result.stdout
    assert "bootstrap: bundle refused: " in result.stderr
    assert re.search(named, result.stderr), result.stderr
    assert host.state() == before
    if case != "bundle for another site":  # the technician's check knows no host
        tech = technician_check(host_bundle, signer[1])
        assert tech.returncode != 0, tech.stdout
        if "sig" not in named:
            assert named.split(":")[0].split("/")[-1].replace("\\", "") in tech.stdout + tech.stderr


def test_bootstrap_never_takes_its_signers_from_the_bundle(host, host_bundle, signer):
    inside = host_bundle / "inventory" / "signers"
    inside.write_text(signer[1].read_text())
    result = host.bootstrap(host_bundle, "--allowed-signers", str(inside))
    assert result.returncode != 0 and "inside the bundle" in result.stderr


@pytest.fixture
def host_chunks(tmp_path, host_bundle, signer):
    return signed_chunks(tmp_path, host_bundle, signer[0])


def test_bootstrap_joins_a_signed_chunk_set(host, host_chunks):
    assert (host_chunks / "bootstrap.sh").exists()
    before = host.state()
    result = host.bootstrap(host_chunks, "--check")
    assert result.returncode == 0, result.stderr
    assert host.state() == before


def test_bootstrap_joins_more_than_1000_chunks(host, tmp_path, signer):
    root = tmp_path / "big"
    make_host_bundle(root)
    (root / "wheelhouse" / "runtime.tar").write_bytes(os.urandom(1 << 20))
    _bundle.write_sums(root, _bundle.hash_files(root))
    sign_bundle(root, signer[0])
    chunks = signed_chunks(tmp_path, root, signer[0], size=1024)
    assert (chunks / "bundle.tar.1000").exists()
    result = host.bootstrap(chunks, "--check")
    assert result.returncode == 0, result.stderr


def _sparse_chunk(chunks, tmp, key):
    for old in chunks.glob("bundle.tar.*"):
        old.unlink()
    data = sparse_stream(tmp, "gnu")
    (chunks / "bundle.tar.000").write_bytes(data)
    (chunks / _bundle.CHUNKS).write_text(f"{hashlib.sha256(data).hexdigest()}  bundle.tar.000\n")
    sign_bundle(chunks, key, _bundle.CHUNKS)  # even signed: the joiner writes no sparse file


HOSTILE_CHUNKS = {
    "unsigned chunk list": (lambda c, _t, _k: (c / "CHUNKS.SHA256.sig").unlink(),
                            r"chunks/CHUNKS\.SHA256\.sig is missing"),
    "chunk list signed by a stranger": (lambda c, t, _k: _resign_chunks(c, t),
                                        r"chunks/CHUNKS\.SHA256\.sig is not made by a key in"),
    "altered chunk": (lambda c, _t, _k: (c / "bundle.tar.001").write_bytes(b"x" + (c / "bundle.tar.001").read_bytes()[1:]),
                      r"chunks/bundle\.tar\.001: checksum mismatch"),
    "chunk with a sparse member": (_sparse_chunk, r"chunks \(chunk stream\): big: not a regular file .*sparse"),
}


def _resign_chunks(chunks, tmp):
    stranger = tmp / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    sign_bundle(chunks, stranger, _bundle.CHUNKS)


@pytest.mark.parametrize("case", HOSTILE_CHUNKS, ids=list(HOSTILE_CHUNKS))
def test_bootstrap_refuses_a_hostile_chunk_set_and_changes_nothing(host, host_chunks, signer, tmp_path, case):
    damage, named = HOSTILE_CHUNKS[case]
    genuine = tmp_path / "genuine-bootstrap.sh"
    genuine.write_bytes((host_chunks / "bootstrap.sh").read_bytes())
    damage(host_chunks, tmp_path, signer[0])
    before = host.state()
    result = host.bootstrap(host_chunks, script=genuine)
    assert result.returncode != 0, result.stdout
    assert "bootstrap: bundle refused: " in result.stderr
    assert re.search(named, result.stderr), result.stderr
    assert host.state() == before


# --- review of the bundle checks: malformed tar headers, deep directories, the results link ------

def _pax_member(records, name="f", data=b""):
    """A pax extended header of records (raw bytes, as a hostile chunk may hold), a member."""
    payload = b""
    for key, value in records:
        record = b" " + key + b"=" + value + b"\n"
        size = len(record) + 1
        while len(str(size)) + len(record) != size:
            size += 1
        payload += str(size).encode() + record
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(payload)
    info = tarfile.TarInfo(name)
    info.size = len(data)

    def padded(block):
        return block + bytes(-len(block) % 512)
    return (header.tobuf(tarfile.USTAR_FORMAT) + padded(payload) + info.tobuf(tarfile.USTAR_FORMAT)
            + padded(data) + bytes(1024))


BAD_SPARSE_MAP = [(b"GNU.sparse.major", b"0"), (b"GNU.sparse.minor", b"1"),
                  (b"GNU.sparse.size", b"10"), (b"GNU.sparse.map", b"a,b")]


def test_a_chunk_with_headers_tarfile_cannot_parse_is_refused_naming_it(tmp_path):
    """tarfile raised ValueError on a GNU sparse map of "a,b": bundle_verify catches only
    BundleError and OSError, so an altered chunk crashed the module with a traceback instead of
    being named (join checks each chunk as the stream passes its end, after tar has parsed it)."""
    data = _pax_member(BAD_SPARSE_MAP)
    altered = tmp_path / "altered"
    altered.mkdir()
    (altered / "bundle.tar.000").write_bytes(data)
    (altered / _bundle.CHUNKS).write_text(hashlib.sha256(b"what was signed").hexdigest()
                                          + "  bundle.tar.000\n")
    with pytest.raises(BundleError, match=r"altered/bundle\.tar\.000: checksum mismatch"):
        _bundle.join(str(altered), str(tmp_path / "joined"))
    listed = one_chunk(tmp_path / "listed", data)  # listed as it is: the archive is what is bad
    with pytest.raises(BundleError, match="not a readable archive"):
        _bundle.join(str(listed), str(tmp_path / "joined"))
    assert not (tmp_path / "joined").exists() and not (tmp_path / "joined.joining").exists()


@pytest.mark.parametrize("kind", ["link", "file"])
def test_bootstrap_refuses_a_results_path_that_is_not_a_plain_directory(
        host, host_bundle, tmp_path, kind):
    """<bundle>.results is on the medium, next to the bundle, and bootstrap.sh (as root) deleted
    <results>/summary.json and the playbook chmodded and wrote into it: a link there sent that
    anywhere (reproduced: a real run deleted summary.json in the link's target; Ansible's file
    task made a 0700 target 0755)."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "summary.json").write_text("not the bundle's\n")
    results = host_bundle.parent / (host_bundle.name + ".results")
    if kind == "link":
        results.symlink_to(victim)
    else:
        results.write_text("")
    before = host.state()
    result = host.bootstrap(host_bundle, "--check")
    assert result.returncode != 0, result.stdout
    assert re.search(r"bootstrap: bundle refused: .*/aurora\.results: a link or not a directory",
                     result.stderr), result.stderr
    assert host.state() == before
    assert (victim / "summary.json").read_text() == "not the bundle's\n"
    assert victim.stat().st_mode & 0o777 == 0o700
    results.unlink()
    results.mkdir()  # a plain directory (a run before this one made it) is fine
    assert host.bootstrap(host_bundle, "--check").returncode == 0


def test_the_laptop_flow_does_not_follow_a_results_link(repo_root):
    """The same directory in the laptop flow: ansible.builtin.file follows a link by default
    (state=directory, mode=0755 chmodded the link's target); follow: false fails on it."""
    import yaml  # pylint: disable=import-outside-toplevel
    tasks = [t for path in (repo_root / "roles" / "offline_bundle" / "tasks").glob("*.yml")
             for t in yaml.safe_load(path.read_text())
             if t.get("name") == "Make the results directory next to the bundle"]
    assert len(tasks) == 1 and tasks[0]["ansible.builtin.file"].get("follow") is False, tasks


@pytest.mark.parametrize("kind", ["owned by another user", "writable by all, no sticky bit",
                                  "below a directory of another user"])
def test_bootstrap_refuses_a_tmpdir_where_another_user_could_swap_the_verified_copy(
        host, host_bundle, tmp_path, kind):
    """TMPDIR leaked in (sudo -E): the working copy went into a directory another user owns,
    who could rename it after the check and put their own in its place. Reproduced as root with
    TMPDIR owned by uid 65534: a process of that uid swapped it 0.8 s in, and what ran as
    ansible-playbook read the swapped ansible.cfg (callback_plugins = …) and packages/*.deb."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    tmpdir = theirs
    if kind == "writable by all, no sticky bit":
        theirs.chmod(0o777)
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root to give a directory to another user")
        os.chown(theirs, 65534, 65534)
        if kind == "below a directory of another user":
            tmpdir = theirs / "mine"
            tmpdir.mkdir()
            os.chown(tmpdir, 0, 0)
    before = host.state()
    result = subprocess.run(["sh", str(host_bundle / "bootstrap.sh"), "--bundle", str(host_bundle),
                             "--prefix", str(host.root), "--host", "edge-c1", "--check"],
                            capture_output=True, text=True, check=False,
                            env={"PATH": os.environ["PATH"], "TMPDIR": str(tmpdir)})
    assert result.returncode != 0, result.stdout
    assert f"bootstrap: bundle refused: {theirs}: another user may rename what is in it" \
        in result.stderr, result.stderr
    assert host.state() == before
    assert [p.name for p in theirs.iterdir()] == (["mine"] if tmpdir != theirs else [])
    theirs.chmod(0o1777)  # sticky, like /tmp: fine
    if kind != "writable by all, no sticky bit":
        os.chown(theirs, 0, 0)
    assert host.bootstrap(host_bundle, "--check").returncode == 0


def test_the_laptop_flow_is_started_outside_the_bundle(repo_root):
    """Typed in the bundle's directory (where the documented check by hand leaves the
    technician), ansible-playbook read the bundle's added ansible.cfg at start: its
    stdout_callback from ./cb ran on the laptop, then bundle_verify refused the bundle for the
    very same ansible.cfg (reproduced with ansible-core 2.19). Only the docs can move where it
    is started: the laptop command leaves the bundle's directory first and says why."""
    doc = (repo_root / "docs" / "offline.md").read_text()
    laptop = doc.split("## From a laptop", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", laptop, re.DOTALL).group(1)
    assert block.startswith("cd ~"), block
    assert "./ansible.cfg" in laptop and "never from the bundle's" in laptop


def test_a_chunk_that_is_a_link_is_refused(host, host_chunks, tmp_path):
    """bootstrap.sh copied chunks with cp, which reads through a link: a chunk set on the medium
    could make root read any file (/proc/kcore, 128 TiB) into the working directory. A link to
    an exact copy of the chunk elsewhere was accepted; now any link in a chunk set refuses it."""
    genuine = tmp_path / "genuine-bootstrap.sh"
    genuine.write_bytes((host_chunks / "bootstrap.sh").read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    chunk = host_chunks / "bundle.tar.001"
    chunk.rename(elsewhere / chunk.name)
    chunk.symlink_to(elsewhere / chunk.name)
    before = host.state()
    result = host.bootstrap(host_chunks, "--check", script=genuine)
    assert result.returncode != 0, result.stdout
    assert re.search(r"bootstrap: bundle refused: .*/chunks/bundle\.tar\.001: a chunk set holds only "
                     "regular files", result.stderr), result.stderr
    assert host.state() == before
    with pytest.raises(BundleError, match=r"bundle\.tar\.001: a chunk set holds only regular files"):
        _bundle.read_chunk_list(host_chunks)
