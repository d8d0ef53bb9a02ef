# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the offline bundle.

    <bundle>/manifest.json       what is inside: models and digests, platforms, files, creation
    <bundle>/SHA256SUMS          every other file's sha256, in `sha256sum -c` format
    <bundle>/SHA256SUMS.sig      `ssh-keygen -Y sign -n edgeml-bundle` signature of SHA256SUMS
    <bundle>/images/             OCI image layout of the model images (blobs shared)
    <bundle>/wheelhouse/ ...     the runtime's wheels per platform, the collection, playbooks

A bundle may travel split into chunks (removable media):

    <chunks>/bundle.tar.000 ...  one tar stream of the bundle directory, cut at a fixed size
                                 (numbered from 000; 1000 and on have more digits)
    <chunks>/CHUNKS.SHA256       each chunk's sha256 (and the bundle's bootstrap.sh, copied next
                                 to the chunks), in `sha256sum -c` format
    <chunks>/CHUNKS.SHA256.sig   its signature, made like SHA256SUMS.sig

Signing SHA256SUMS covers every file of the bundle, and any file that is not listed refuses it;
signing CHUNKS.SHA256 covers the chunks, checked before anything is unpacked. Nothing here
trusts a path read from a bundle: names are checked before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import sha256_file
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
CHUNKS = "CHUNKS.SHA256"
CHUNK_PREFIX = "bundle.tar."
CHUNK_NAME = re.compile(r"^bundle\.tar\.(\d{3,})$")
BOOTSTRAP = "bootstrap.sh"
NAMESPACE = "edgeml-bundle"
FORMAT = "edgeml-bundle/1"
IMAGES = "images"
SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
# The characters a bundle's file names may use (bootstrap.sh checks the same with find).
SAFE_NAME = re.compile(r"^[A-Za-z0-9._+@,=~-]+\Z")  # \Z: "$" would let a final newline through
SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
BLOCK = 1 << 20


class BundleError(EdgemlError):
    """A bundle was refused or could not be made; .msg names the file."""


def parse_size(value):
    """'700M', '4G', '1048576' -> bytes."""
    match = SIZE_RE.match(str(value))
    if not match:
        raise BundleError(f"chunk size {value!r} is not a size like 700M, 4G or 1048576")
    number = int(match.group(1)) << (10 * " KMGT".index(match.group(2).upper() or " "))
    if number < 1024:
        raise BundleError(f"chunk size {value!r} is too small (at least 1K)")
    return number


def safe_relpath(name, where):
    """A relative path that stays inside its directory, or BundleError."""
    norm = os.path.normpath(name)
    if (not name or name.startswith("/") or norm.startswith("..") or norm == "."
            or "\\" in name or "\x00" in name):
        raise BundleError(f"{where}: unsafe path {name!r} (absolute, or leaving the bundle)")
    return norm


def _walk(root):
    """os.walk, which is recursive up to Python 3.11: an added chain of 1000 empty directories
    raised RecursionError (a traceback, not a refusal naming the file)."""
    walker = os.walk(root)
    while True:
        try:
            entry = next(walker)
        except StopIteration:
            return
        except RecursionError:
            raise BundleError(f"{root}: directories nested too deeply for a bundle") from None
        yield entry


def list_files(root):
    """Relative paths of the bundle's files (not SHA256SUMS and its signature).

    A bundle holds regular files and directories only, with plain names: a symlink, a device or
    a name with other characters is refused.
    """
    found = []
    for dirpath, dirs, files in _walk(root):
        dirs.sort()
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path) or not (os.path.isdir(path) or os.path.isfile(path)):
                raise BundleError(f"{path}: a bundle holds only files and directories; this is "
                                  "a link or a special file")
            if not SAFE_NAME.match(name):
                raise BundleError(f"{path}: a bundle's file names use only letters, digits and "
                                  "._+@,=~-")
            if name in files and rel not in (SUMS, SIGNATURE):
                found.append(rel)
    return sorted(found)


def hash_files(root, skip=()):
    """{relpath: (sha256, size)} for every file of the bundle but those in skip."""
    return {rel: (sha256_file(os.path.join(root, rel)).hexdigest(), os.path.getsize(os.path.join(root, rel)))
            for rel in list_files(root) if rel not in skip}


def write_if_changed(path, text):
    """Write text to path atomically unless it already holds it; True if written."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except (OSError, UnicodeDecodeError):
        pass
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)
    return True


def write_sums(root, entries):
    """Write SHA256SUMS for {relpath: (sha256, size)}; True if it changed."""
    return write_if_changed(os.path.join(root, SUMS), "".join(
        f"{digest}  {rel}\n" for rel, (digest, _size) in sorted(entries.items())))


def read_sums(path):
    """{relpath: sha256} from a SHA256SUMS-format file; BundleError naming a bad line."""
    entries = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read the checksum list: {exc}")
    for number, line in enumerate(lines, 1):
        match = SUM_LINE.match(line)
        if not match:
            raise BundleError(f"{path} line {number}: not '<sha256>  <file>': {line[:80]!r}")
        rel = safe_relpath(match.group(2), f"{path} line {number}")
        if rel in entries:
            raise BundleError(f"{path} line {number}: {rel} is listed twice")
        entries[rel] = match.group(1)
    return entries


def check_sums(root, progress=None):
    """Check every file against SHA256SUMS; no file missing, altered or unlisted.

    Returns (files, bytes). The error names the first bad file.
    """
    sums_path = os.path.join(root, SUMS)
    if not os.path.isfile(sums_path):
        raise BundleError(f"{root} has no {SUMS}: not a sealed bundle (or a truncated copy)")
    listed = read_sums(sums_path)
    present = list_files(root)
    unlisted = sorted(set(present) - set(listed))
    if unlisted:
        raise BundleError(f"{os.path.join(root, unlisted[0])}: not in {SUMS} (a file was added "
                          f"to the bundle after it was sealed; {len(unlisted)} in all)")
    total = 0
    for rel, want in listed.items():
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            raise BundleError(f"{path}: missing (listed in {SUMS}); the bundle is incomplete")
        got = sha256_file(path).hexdigest()
        if got != want:
            raise BundleError(f"{path}: checksum mismatch (sha256 {got}, {SUMS} says {want}); "
                              "the file was altered or damaged in transit")
        total += os.path.getsize(path)
        if progress:
            progress(rel)
    return len(listed), total


def read_manifest(root):
    path = os.path.join(root, MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the bundle manifest: {exc}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not an edgeml bundle manifest (format {FORMAT} expected)")
    return manifest


def _load_blob(layout, descriptor, where, omitted):
    """Check one descriptor's blob (present, right size); return its bytes if it is JSON-sized."""
    digest = descriptor.get("digest", "")
    if not re.match(r"^sha256:[0-9a-f]{64}$", digest):
        raise BundleError(f"{where}: bad digest {digest!r}")
    path = os.path.join(layout, "blobs", "sha256", digest[7:])
    if not os.path.isfile(path):
        if digest in omitted:
            return None
        raise BundleError(f"{path}: missing blob {digest} ({where})")
    if descriptor.get("size") is not None and os.path.getsize(path) != descriptor["size"]:
        raise BundleError(f"{path}: {os.path.getsize(path)} bytes, {where} says "
                          f"{descriptor['size']}")
    return path


def blobs_hashed(digests):
    """The blobs whose content is known to hash to their names, from {bundle path: sha256 hex}
    (SHA256SUMS as checked, or the files as just hashed), so check_layout need not read them."""
    prefix = IMAGES + "/blobs/sha256/"
    return {digest for rel, digest in digests.items() if rel == prefix + digest}


def check_layout(layout, omitted=(), hashed=()):
    """Check an OCI image layout: every image reachable from index.json has all its blobs, each
    of the size its descriptor says and with content that hashes to its name.

    omitted: digests left out on purpose: blobs a delta bundle's site already has, manifests of
    platforms no target site has.
    hashed: sha256 hex names of blobs already hashed to their names (see blobs_hashed).
    Returns {ref name or digest: manifest digest}.
    """
    omitted, hashed = set(omitted), set(hashed)

    def check_digest(path, digest):
        if digest[7:] not in hashed and "sha256:" + sha256_file(path).hexdigest() != digest:
            raise BundleError(f"{path}: content does not hash to its name {digest}")

    marker = os.path.join(layout, "oci-layout")
    try:
        with open(marker, encoding="utf-8") as handle:
            version = json.load(handle).get("imageLayoutVersion")
        with open(os.path.join(layout, "index.json"), encoding="utf-8") as handle:
            index = json.load(handle)
    except (OSError, ValueError, AttributeError) as exc:
        raise BundleError(f"{layout}: not a readable OCI image layout: {exc}")
    if version != "1.0.0":
        raise BundleError(f"{marker}: imageLayoutVersion {version!r}, expected '1.0.0'")
    images = {}
    pending = [(d, "index.json") for d in index.get("manifests") or []]
    while pending:
        descriptor, where = pending.pop()
        path = _load_blob(layout, descriptor, where, omitted)
        if path is None:  # a platform the bundle leaves out on purpose
            continue
        check_digest(path, descriptor["digest"])
        try:
            with open(path, "rb") as handle:
                doc = json.loads(handle.read())
        except ValueError:
            raise BundleError(f"{path}: manifest {descriptor['digest']} is not JSON")
        name = (descriptor.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if name and not re.search(r":sha256-[0-9a-f]{64}\Z", name):  # not a signatures' index
            images[name] = descriptor["digest"]
        label = f"manifest {descriptor['digest'][:19]}…"
        if "manifests" in doc:  # an image index: its platform manifests
            pending.extend((d, label) for d in doc["manifests"])
            continue
        if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers"), list):
            raise BundleError(f"{path}: {label} has no config or layers")
        for blob in [doc["config"]] + doc["layers"]:
            blob_path = _load_blob(layout, blob, label, omitted)
            if blob_path:
                check_digest(blob_path, blob["digest"])
    return images


# --- chunks ------------------------------------------------------------------------------------

class _ChunkWriter:
    """A write-only file that rolls over to a new chunk file every `size` bytes."""

    def __init__(self, directory, size):
        self.directory, self.size = directory, size
        self.chunks = []  # (name, sha256, size)
        self._handle = None

    def _roll(self):
        self._close_chunk()
        name = f"{CHUNK_PREFIX}{len(self.chunks):03d}"
        self._handle = open(os.path.join(self.directory, name), "wb")  # pylint: disable=consider-using-with
        self._name, self._hash, self._written = name, hashlib.sha256(), 0

    def _close_chunk(self):
        if self._handle:
            self._handle.close()
            self.chunks.append((self._name, self._hash.hexdigest(), self._written))
            self._handle = None

    def write(self, data):
        view = memoryview(data)
        while view:
            if self._handle is None or self._written == self.size:
                self._roll()
            part = view[:self.size - self._written]
            self._handle.write(part)
            self._hash.update(part)
            self._written += len(part)
            view = view[len(part):]
        return len(data)

    def close(self):
        self._close_chunk()


def split(root, out_dir, chunk_size):
    """Cut the bundle directory into chunk files listed in CHUNKS.SHA256, with a copy of the
    bundle's bootstrap.sh next to them (listed too); returns the chunks. Sign CHUNKS.SHA256
    afterwards (sign(..., name=CHUNKS))."""
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):  # a previous, maybe interrupted, split
        if name.startswith(CHUNK_PREFIX) or name in (CHUNKS, CHUNKS + ".sig", BOOTSTRAP):
            os.unlink(os.path.join(out_dir, name))
    writer = _ChunkWriter(out_dir, chunk_size)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in [SUMS, SIGNATURE] + list_files(root):
            path = os.path.join(root, rel)
            if not os.path.exists(path):
                continue
            info = tar.gettarinfo(path, arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    writer.close()
    lines = [f"{digest}  {name}\n" for name, digest, _size in writer.chunks]
    if os.path.isfile(os.path.join(root, BOOTSTRAP)):
        shutil.copy(os.path.join(root, BOOTSTRAP), os.path.join(out_dir, BOOTSTRAP))
        lines.append(f"{sha256_file(os.path.join(out_dir, BOOTSTRAP)).hexdigest()}  {BOOTSTRAP}\n")
    with open(os.path.join(out_dir, CHUNKS), "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return [{"file": name, "sha256": digest, "size": size} for name, digest, size in writer.chunks]


def is_chunk_set(path):
    return os.path.isfile(os.path.join(path, CHUNKS))


def read_chunk_list(directory, listing=None):
    """The chunks CHUNKS.SHA256 lists, in numeric order: ([(name, sha256)], the list's sha256).

    listing: the list to read instead of directory's own (the copy whose signature was checked).
    The chunks must be numbered 000, 001, ... without a gap (1000 and on have more digits).
    """
    path = listing or os.path.join(directory, CHUNKS)
    listed = read_sums(path)
    listed.pop(BOOTSTRAP, None)
    numbered = {}
    for name in listed:
        match = CHUNK_NAME.match(name)
        if not match:
            raise BundleError(f"{path}: {name!r} is not a chunk name")
        numbered[int(match.group(1))] = name
    if not numbered:
        raise BundleError(f"{path}: lists no chunks")
    for index in range(len(numbered)):
        if numbered.get(index) != f"{CHUNK_PREFIX}{index:03d}":
            raise BundleError(f"{path}: the chunks are not numbered 000 to {len(numbered) - 1:03d} "
                              f"(no {CHUNK_PREFIX}{index:03d})")
        chunk = os.path.join(directory, numbered[index])
        if os.path.islink(chunk):  # read through, it could be any file (a device's is refused)
            raise BundleError(f"{chunk}: a chunk set holds only regular files; this is a link")
        if not os.path.isfile(chunk):
            raise BundleError(f"{chunk}: missing chunk ({len(numbered)} listed in {CHUNKS}); "
                              "copy it from its medium")
    chunks = [(numbered[i], listed[numbered[i]]) for i in range(len(numbered))]
    return chunks, sha256_file(path).hexdigest()


def check_chunks(directory, listing=None):
    """Hash every chunk against CHUNKS.SHA256 (before anything is unpacked)."""
    chunks, ident = read_chunk_list(directory, listing)
    for name, want in chunks:
        path = os.path.join(directory, name)
        if sha256_file(path).hexdigest() != want:
            raise BundleError(f"{path}: checksum mismatch; copy this chunk again from the medium")
    return chunks, ident


class _ChunkReader:
    """Read the chunks in order as one stream, checking each chunk as it goes."""

    def __init__(self, directory, chunks):
        self.directory, self.chunks = directory, chunks
        self._index, self._handle, self._hash = -1, None, None
        self.damaged = False  # a chunk failed its check (and was named)

    def _next(self):
        if self._handle:
            self._handle.close()
            name, want = self.chunks[self._index]
            if self._hash.hexdigest() != want:
                self.damaged = True
                raise BundleError(f"{os.path.join(self.directory, name)}: checksum mismatch; "
                                  "copy this chunk again from the medium")
        self._index += 1
        if self._index == len(self.chunks):
            self._handle = None
            return False
        self._handle = open(os.path.join(self.directory, self.chunks[self._index][0]), "rb")  # pylint: disable=consider-using-with
        self._hash = hashlib.sha256()
        return True

    def read(self, size=BLOCK):
        while True:
            if self._handle is None and (self._index >= len(self.chunks) or not self._next()):
                return b""
            data = self._handle.read(size)
            if data:
                self._hash.update(data)
                return data
            if not self._next():
                return b""

    def finish(self):
        while self.read():  # anything tar did not read (end-of-archive padding)
            pass


def joined_mark(dest):
    """The file next to dest saying which chunk list it was joined from."""
    return dest.rstrip("/") + ".joined"


def joined_from(dest, ident):
    """dest is this chunk set (its list's sha256), reassembled earlier."""
    try:
        with open(joined_mark(dest), encoding="utf-8") as handle:
            return os.path.isdir(dest) and handle.read().strip() == ident
    except OSError:
        return False


def _untar(reader, directory, staging, cap):
    """Unpack the chunk stream: regular files and directories with safe names only, no more
    bytes than the chunks hold (a sparse member could claim far more)."""
    where = f"{directory} (chunk stream)"
    written = 0
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                rel = safe_relpath(member.name, where)
                target = os.path.join(staging, rel)
                if member.type == tarfile.DIRTYPE:
                    os.makedirs(target, mode=0o755, exist_ok=True)
                    continue
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
                    raise BundleError(f"{where}: {member.name!r} is not a regular file or "
                                      "directory (a link, device or sparse member); refused")
                written += member.size
                if written > cap:
                    raise BundleError(f"{where}: {member.name!r} takes the stream past the "
                                      f"{cap} bytes its chunks hold; refused")
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                with open(target, "xb") as out:  # a name given twice is refused
                    shutil.copyfileobj(tar.extractfile(member), out, BLOCK)
                os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
    except (tarfile.TarError, ValueError, OverflowError, UnicodeError) as exc:
        # tarfile parses headers it cannot use with int() and the like (a GNU sparse map of
        # "a,b"): a ValueError from a chunk that was altered, named by the caller (reader.damaged)
        raise BundleError(f"{directory}: the joined chunks are not a readable archive: {exc}")
    except FileExistsError as exc:
        raise BundleError(f"{where}: {exc.filename} is given twice; refused")


def join(directory, dest, verify=None, listing=None):
    """Reassemble a chunk set into the bundle directory dest. Returns False if already done.

    Check the chunk list's signature first (verify_signature(..., name=CHUNKS)) and pass the list
    that was checked as listing. The chunks are read once: each is checked as the stream passes
    its end, and a damaged chunk is named even when it first shows as a broken tar.
    verify(staging) checks the result before it replaces dest, so a failed or interrupted join
    leaves dest as it was, and nothing else that looks like a bundle.
    """
    chunks, ident = read_chunk_list(directory, listing)
    if joined_from(dest, ident):
        return False
    dest = dest.rstrip("/")
    cap = sum(os.path.getsize(os.path.join(directory, name)) for name, _digest in chunks)
    staging, old = dest + ".joining", dest + ".replaced"
    for path in (staging, old):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(staging, mode=0o700)
    reader = _ChunkReader(directory, chunks)
    try:
        try:
            _untar(reader, directory, staging, cap)
        except BundleError:
            if not reader.damaged:
                reader.finish()  # a damaged chunk is the likelier cause: name it first
            raise
        reader.finish()
        if verify:
            verify(staging)
        os.chmod(staging, 0o755)
        if os.path.exists(joined_mark(dest)):
            os.unlink(joined_mark(dest))
        if os.path.exists(dest):
            os.rename(dest, old)
        os.rename(staging, dest)
        write_if_changed(joined_mark(dest), ident + "\n")
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


# --- signatures (ssh-keygen -Y: a tool every technician's machine already has) ------------------

def sign(run, root, key, name=SUMS):
    """Sign root/name (SHA256SUMS, or a chunk set's CHUNKS.SHA256) with the SSH private key into
    name.sig; run is AnsibleModule.run_command."""
    sig = os.path.join(root, name + ".sig")
    if os.path.exists(sig):
        os.unlink(sig)
    rc, _out, err = run(["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", NAMESPACE,
                         os.path.join(root, name)])
    if rc != 0:
        raise BundleError(f"signing {os.path.join(root, name)} with {key} failed: {err.strip()}")
    return sig


def signed_by(run, root, key, name=SUMS):
    """name.sig is this key's signature of name as it is now, so sealing again can keep it
    (and a bundle sealed again with a new key is signed anew)."""
    if not os.path.isfile(os.path.join(root, name + ".sig")):
        return False
    rc, public, _err = run(["ssh-keygen", "-y", "-P", "", "-f", key])
    if rc != 0 or not public.strip():
        return False
    with tempfile.NamedTemporaryFile("w", suffix=".allowed-signers") as allowed:
        allowed.write(f"sealer {public.strip()}\n")
        allowed.flush()
        rc, _out, _err = _verify(run, root, allowed.name, "sealer", name)
    return rc == 0


def _verify(run, root, allowed_signers, principal, name):
    """ssh-keygen -Y verify of name.sig over name; returns (rc, out, err)."""
    with open(os.path.join(root, name), "rb") as handle:
        data = handle.read()
    return run(["ssh-keygen", "-Y", "verify", "-f", allowed_signers, "-I", principal,
                "-n", NAMESPACE, "-s", os.path.join(root, name + ".sig")],
               data=data, binary_data=True)


def verify_signature(run, root, allowed_signers, name=SUMS):
    """Check root/name.sig (SHA256SUMS.sig, or CHUNKS.SHA256.sig) against an allowed-signers file
    given by the host or the technician, never the bundle; returns the signer's principal."""
    listing = os.path.join(root, name)
    sig = listing + ".sig"
    what = "bundle" if name == SUMS else "chunk list"
    if not os.path.isfile(sig):
        raise BundleError(f"{sig}: missing: the {what} is unsigned. Refused (set "
                          "require_signature=false only for a bundle you built yourself)")
    if not os.path.isfile(listing):
        raise BundleError(f"{listing}: missing: the {what} is incomplete")
    if not os.path.isfile(allowed_signers):
        raise BundleError(f"{allowed_signers}: no allowed-signers file, so the signature cannot "
                          "be checked; get it from your fleet's operators (not from the bundle)")
    rc, out, err = run(["ssh-keygen", "-Y", "find-principals", "-s", sig, "-f", allowed_signers])
    principals = out.split()
    if rc != 0 or not principals:
        raise BundleError(f"{sig}: not made by a key in {allowed_signers}: "
                          f"{(err or out).strip() or 'no principal matches'}")
    rc, out, err = _verify(run, root, allowed_signers, principals[0], name)
    if rc != 0:
        raise BundleError(f"{sig}: the signature does not match {listing} "
                          f"({(err or out).strip()}); the list was altered")
    return principals[0]
