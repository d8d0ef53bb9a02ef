# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the host model store (content-addressed, atomic switch).

    <store>/.lock                            flock: one writer at a time (sync, rollback, GC)
    <store>/blobs/sha256/<hex>               verified blobs (partial downloads: <hex>.partial)
    <store>/blobs/verified.json              {hex: [size, mtime_ns]} when each blob was verified
    <store>/<model>/versions/<digest-hex>/   one version's files + .edgeml-version.json
    <store>/<model>/current  -> versions/…   switched atomically (new symlink + rename)
    <store>/<model>/previous -> versions/…   the rollback target
    <store>/<model>/rejected/<digest-hex>    why that version failed here (not tried again)
    <store>/<model>/signatures/<digest-hex>/<bundle-hex>.json
                                             the version's signatures (Sigstore bundles), as
                                             fetched from the registry; checked before it serves

Nothing becomes current before it is complete and verified; a version directory appears only
by rename, so a killed sync leaves the old version or the new one, never a mix. Every file and
directory is fsynced before the rename or symlink switch that publishes it, so after a power cut
a name never points at bytes that did not reach the disk. A blob that is reused is checked: its
size always, its whole content when its mtime differs from its verification record (or when
model_info verifies). The store is root's; the service user's group may only read it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import (
    digest_hex, file_digest, sha256_file)
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._files import (
    fsync_dir, fsync_tree, write_file_atomic)
from ansible_collections.edgeml.fleet.plugins.module_utils._layer import HostileLayer, extract_layers

MODEL_RE = re.compile(r"\A[a-z0-9][a-z0-9_.-]{0,62}\Z")
HEX_RE = re.compile(r"\A[0-9a-f]{64}\Z")  # the names of blobs and version directories
MAX_TITLE = 255  # bytes, as NAME_MAX
RESERVED_NAMES = frozenset({"blobs"})  # names of the store's own entries at its top level
VERSION_FILE = ".edgeml-version.json"
METADATA = "edgeml-model.json"
LOCK_FILE = ".lock"
VERIFIED_FILE = "verified.json"
REJECTED_DIR = "rejected"
MAX_REASON = 4 << 10  # bytes of a rejection reason that are kept and read back
MAX_REJECTED = 32  # rejection records kept per model: the newest; a registry can make endless failures
SIGNATURES_DIR = "signatures"
MAX_SIGNATURES = 16  # per version: a registry can attach endless referrers
MAX_SIGNATURE_BYTES = 1 << 20  # a Sigstore bundle is a few KiB, even with a certificate chain


class StoreError(EdgemlError):
    """The store refused or could not do something; .msg says what and where."""


class StoreBusy(StoreError):
    """Another run holds the store's lock."""


def check_model_name(name):
    if not isinstance(name, str) or not MODEL_RE.match(name):
        raise StoreError(f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-' "
                         "(at most 63, starting with a letter or digit)")
    if name in RESERVED_NAMES:
        raise StoreError(f"model name {name!r} is reserved: the store keeps its own data under "
                         "that name; choose another")
    return name


def reason_text(reason):
    """A rejection reason as the store keeps it: one line, no control characters (it may quote
    what a registry wrote, and ends up on terminals), at most MAX_REASON bytes of UTF-8."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(reason))
    return " ".join(text.split()).encode("utf-8", "replace")[:MAX_REASON].decode("utf-8", "ignore").strip()


def _hex(digest):
    return digest_hex(digest)


def _own_dir(path):
    """path, one of the store's own directories, if it is a real directory or absent.

    A symlink (or anything else) there was planted, for root to follow out of the store: refused.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    if not stat.S_ISDIR(mode):
        kind = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
        raise StoreError(f"{path} is {kind}: the store's own directories are never links, so "
                         "something planted it for root to follow. Refusing it; remove it and "
                         "run again.")
    return path


def _read_regular(path, limit):
    """At most limit bytes of path if it is a regular file (no link followed), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
        return data if len(data) <= limit else None
    finally:
        os.close(fd)


def _is_real_dir(path):
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_title(layer):
    """The file name an artifact layer's title gives: one plain name of at most MAX_TITLE bytes."""
    title = (layer.get("annotations") or {}).get("org.opencontainers.image.title")
    try:
        size = len(title.encode("utf-8")) if isinstance(title, str) else None
    except UnicodeEncodeError:
        size = None
    if size is None or not 0 < size <= MAX_TITLE or "/" in title or "\0" in title \
            or title.startswith("."):
        raise HostileLayer(f"layer {layer['digest']} is titled {title!r}: a file name must be one "
                           f"name of 1 to {MAX_TITLE} bytes, not contain '/' or start with '.'")
    return title


class Store:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")

    # -- paths ---------------------------------------------------------------------------
    def blob_path(self, digest):
        return os.path.join(self.blobs, _hex(digest))

    def has_blob(self, digest):
        return os.path.isfile(self.blob_path(digest))

    # -- blob integrity ------------------------------------------------------------------
    def _verified_path(self):
        return os.path.join(os.path.dirname(self.blobs), VERIFIED_FILE)

    def _read_verified(self):
        try:
            with open(self._verified_path(), encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError, RecursionError):
            return {}

    def mark_verified(self, digests):
        """Record that these blobs were just verified (their size and mtime as they are now)."""
        records = self._read_verified()
        for digest in digests:
            info = os.lstat(self.blob_path(digest))
            records[_hex(digest)] = [info.st_size, info.st_mtime_ns]
        write_file_atomic(self._verified_path(),
                          json.dumps(records, sort_keys=True).encode())

    def blob_ok(self, digest, size=None, full=False, repair=True):
        """True when the blob is in the store and sound; a damaged one is removed (repair).

        The size is checked always; the content is hashed again when full, or when the blob's
        size or mtime differ from its verification record (a write after verification, or a
        power cut that left a verified name on bytes that never reached the disk).
        """
        path = self.blob_path(digest)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        sound = stat.S_ISREG(info.st_mode) and (size is None or info.st_size == size)
        if sound and (full or self._read_verified().get(_hex(digest)) !=
                      [info.st_size, info.st_mtime_ns]):
            sound = "sha256:" + sha256_file(path).hexdigest() == digest
            if sound and repair:
                self.mark_verified([digest])
        if not sound and repair:
            os.unlink(path)
        return sound

    def verify_blobs(self):
        """Re-hash every blob; return a list of problems (empty when all match their names)."""
        problems = []
        for name in sorted(os.listdir(self.blobs)) if os.path.isdir(self.blobs) else []:
            if name.endswith(".partial"):
                continue
            path = os.path.join(self.blobs, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                problems.append(f"blob {name} is not a regular file")
            elif sha256_file(path).hexdigest() != name:
                problems.append(f"blob sha256:{name} does not match its name")
        return problems

    def partial_size(self, digest):
        try:
            return os.path.getsize(self.blob_path(digest) + ".partial")
        except OSError:
            return 0

    def model_dir(self, model):
        path = _own_dir(os.path.join(self.root, check_model_name(model)))
        _own_dir(os.path.join(path, "versions"))
        return path

    def version_dir(self, model, digest):
        return os.path.join(self.model_dir(model), "versions", _hex(digest))

    def has_version(self, model, digest):
        return os.path.isfile(os.path.join(self.version_dir(model, digest), VERSION_FILE))

    def version_intact(self, model, digest):
        """Staged, and every file of its record present with its recorded size (cheap: lstat)."""
        vdir = self.version_dir(model, digest)
        record = self.read_record(vdir)
        if not record:
            return False
        return not any(_entry_problem(vdir, rel, info, full=False)
                       for rel, info in (record.get("files") or {}).items())

    def ensure_dirs(self):
        for path in (self.root, _own_dir(os.path.dirname(self.blobs)), _own_dir(self.blobs)):
            if not os.path.isdir(path):
                os.makedirs(path, exist_ok=True)
                os.chmod(path, 0o750)

    @contextlib.contextmanager
    def lock(self, timeout=600):
        """Hold the store's exclusive lock; wait up to timeout seconds for another run."""
        self.ensure_dirs()
        path = os.path.join(self.root, LOCK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the store's lock {path}: {exc.strerror}; it must be a "
                             "regular file of this run's user (remove it)") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise StoreError(f"the store's lock {path} is not a regular file of this run's "
                                 "user: someone else made it, and could hold it for ever. Remove "
                                 "it and run again.")
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"the model store {self.root} is locked by another run (sync, "
                                    f"rollback or clean-up) and stayed locked for {timeout} s; "
                                    "wait for it to finish or raise lock_timeout. Nothing was "
                                    "changed.")
                time.sleep(0.2)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _link_target(self, model, link):
        path = os.path.join(self.model_dir(model), link)
        try:
            target = os.readlink(path)
        except OSError:
            return None
        return "sha256:" + os.path.basename(target)

    def current(self, model):
        return self._link_target(model, "current")

    def previous(self, model):
        return self._link_target(model, "previous")

    def models(self, with_rejected=False):
        """The models with staged versions; with_rejected adds those with only rejected ones (a
        first version that failed leaves nothing else behind, and must still not be retried)."""
        if not os.path.isdir(self.root):
            return []
        kinds = ("versions", "rejected") if with_rejected else ("versions",)
        return sorted(d for d in os.listdir(self.root)
                      if d not in RESERVED_NAMES and MODEL_RE.match(d)
                      and _is_real_dir(os.path.join(self.root, d))
                      and any(_is_real_dir(os.path.join(self.root, d, kind)) for kind in kinds))

    def versions(self, model):
        """[(digest, record)] newest first."""
        base = os.path.join(self.model_dir(model), "versions")
        found = []
        for name in os.listdir(base) if os.path.isdir(base) else []:
            if not HEX_RE.match(name):
                continue  # a leftover .staging-… (a kill may leave one with its record)
            record = self.read_record(os.path.join(base, name))
            if record:
                found.append(("sha256:" + name, record))
        return sorted(found, key=lambda item: item[1].get("staged_at", 0), reverse=True)

    @staticmethod
    def read_record(version_dir):
        try:
            with open(os.path.join(version_dir, VERSION_FILE), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError, RecursionError):
            return None

    # -- staging -------------------------------------------------------------------------
    def stage(self, model, digest, record, fill):
        """Create versions/<hex> atomically: fill(tmpdir) writes the files, then rename."""
        final = self.version_dir(model, digest)
        parent = os.path.dirname(final)
        for path in (self.root, self.model_dir(model), parent):
            if not os.path.isdir(path):
                os.makedirs(path, exist_ok=True)
                os.chmod(path, 0o750)
        tmp = tempfile.mkdtemp(prefix=".staging-", dir=parent)
        try:
            files = fill(tmp)
            if os.path.lexists(os.path.join(tmp, VERSION_FILE)):
                raise HostileLayer(f"the image holds a file named {VERSION_FILE} at the top of "
                                   "the model, the name the store keeps for its version record; "
                                   "refusing it")
            record = dict(record, files=files, staged_at=time.time())
            with open(os.path.join(tmp, VERSION_FILE), "x", encoding="utf-8") as handle:
                json.dump(record, handle, indent=1, sort_keys=True)
            os.chmod(tmp, 0o750)
            fsync_tree(tmp)  # every byte on disk before the name that publishes it
            if os.path.lexists(final):  # a leftover without a record, or a damaged version
                old = tempfile.mkdtemp(prefix=".damaged-", dir=parent)
                os.rename(final, os.path.join(old, "v"))
                os.rename(tmp, final)
                shutil.rmtree(old)
            else:
                os.rename(tmp, final)
            fsync_dir(parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def clean_staging(self, model):
        """Remove what a killed sync left half-made."""
        parent = os.path.join(self.model_dir(model), "versions")
        for name in os.listdir(parent) if os.path.isdir(parent) else []:
            if name.startswith((".staging-", ".damaged-")):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)

    def link_artifact_files(self, layers, target):
        """OCI artifact: each layer is one file named by its title annotation (hard links)."""
        files = {}
        for layer in layers:
            if not (layer.get("annotations") or {}).get("org.opencontainers.image.title"):
                continue
            title = _check_title(layer)
            if title in files:  # a second link of that name would write into the first blob
                raise HostileLayer(f"layer {layer['digest']} is titled {title!r}, like "
                                   f"{files[title]['digest']}: two files of one name; refusing it")
            dest = os.path.join(target, title)
            try:
                os.link(self.blob_path(layer["digest"]), dest)
            except OSError as exc:  # another file system, or no hard links: copy to a new file
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                with open(self.blob_path(layer["digest"]), "rb") as src, open(dest, "xb") as out:
                    shutil.copyfileobj(src, out)
            os.chmod(dest, 0o640)
            files[title] = {"digest": layer["digest"], "size": layer["size"]}
        if not files:
            raise StoreError("the artifact has no layer with an org.opencontainers.image.title "
                             "annotation, so it names no files")
        return files

    def extract_modelcar(self, layers, target, model_path="/models", max_bytes=8 << 30):
        """Container image: apply tar layers in order, keeping only what lies under model_path
        (the rules against hostile layers are in _layer.py). Symlinks are recorded as
        {"link": text}, regular files as {"digest", "size"}."""
        blobs = [(self.blob_path(layer["digest"]), layer["digest"]) for layer in layers]
        files = extract_layers(blobs, target, model_path.strip("/") + "/", max_bytes)
        if not any("digest" in info for info in files.values()):
            raise StoreError(f"the image has no files under {model_path}; set model_path to where "
                             "the model lies in the image")
        return files

    # -- switching -----------------------------------------------------------------------
    def _point(self, model, link, digest):
        base = self.model_dir(model)
        tmp = os.path.join(base, f".{link}.tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("versions", _hex(digest)), tmp)
        os.replace(tmp, os.path.join(base, link))
        fsync_dir(base)

    def activate(self, model, digest):
        """Make digest current; the old current becomes previous. Returns the old current."""
        old = self.current(model)
        if old == digest:
            return old
        if old:
            self._point(model, "previous", old)  # first, so a kill leaves previous == current
        self._point(model, "current", digest)
        return old

    def rollback(self, model, target):
        """Switch to target (previous, or another staged digest) and drop the previous link.

        The version rolled back from stays staged but is no longer a rollback target, so a
        second rollback finds nothing to do.
        """
        if not self.has_version(model, target):
            raise StoreError(f"model '{model}' has no staged version {target} to roll back to")
        old = self.activate(model, target)
        previous = os.path.join(self.model_dir(model), "previous")
        if os.path.lexists(previous):
            os.unlink(previous)
            fsync_dir(self.model_dir(model))
        return old

    def remove(self, model):
        path = self.model_dir(model)
        if os.path.isdir(path):
            shutil.rmtree(path)
            return True
        return False

    # -- rejected versions ---------------------------------------------------------------
    # A version that failed verification or the health gate here is recorded with the reason,
    # so a deploy does not try it again on every run (no flapping in and out of service).
    def _rejected_path(self, model, digest):
        base = _own_dir(os.path.join(self.model_dir(model), REJECTED_DIR))
        return os.path.join(base, _hex(digest))

    def reject(self, model, digest, reason, uid=-1, gid=-1):
        """Record digest of model as rejected, with the reason; owner uid, group gid (-1: this
        run's), modes 0750/0640. Returns True when the record was new or different."""
        path = self._rejected_path(model, digest)
        reason = reason_text(reason)
        if self.rejection(model, digest) == reason:
            return False
        for directory in (self.root, self.model_dir(model), os.path.dirname(path)):
            if not os.path.isdir(directory):
                os.makedirs(directory, exist_ok=True)
                os.chmod(directory, 0o750)
                os.lchown(directory, uid, gid)
        # The records' directory is this run's owner's even if an older release made it the
        # service user's: whoever can write there could forge or drop records.
        os.lchown(os.path.dirname(path), uid, gid)
        os.chmod(os.path.dirname(path), 0o750)
        write_file_atomic(path, reason.encode("utf-8") + b"\n")
        os.lchown(path, uid, gid)
        self._keep_newest_rejections(os.path.dirname(path))
        return True

    @staticmethod
    def _keep_newest_rejections(base):
        records = [entry for entry in os.scandir(base) if HEX_RE.match(entry.name)
                   and entry.is_file(follow_symlinks=False)]
        records.sort(key=lambda entry: entry.stat(follow_symlinks=False).st_mtime_ns, reverse=True)
        for entry in records[MAX_REJECTED:]:
            os.unlink(entry.path)

    def rejection(self, model, digest):
        """The reason digest of model was rejected, or None when it was not."""
        path = self._rejected_path(model, digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read the rejection record {path}: {exc.strerror}; it must "
                             "be a regular file (remove it)") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"the rejection record {path} is not a regular file; remove it")
            return os.read(fd, MAX_REASON).decode("utf-8", "replace").strip()
        finally:
            os.close(fd)

    def rejections(self, model):
        """{digest: reason} of every rejected version of model."""
        base = _own_dir(os.path.join(self.model_dir(model), REJECTED_DIR))
        names = os.listdir(base) if _is_real_dir(base) else []
        return {"sha256:" + name: self.rejection(model, "sha256:" + name)
                for name in sorted(names) if HEX_RE.match(name)}

    def forget_rejection(self, model, digest):
        """Drop the rejection record of digest; returns True when there was one."""
        path = self._rejected_path(model, digest)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        fsync_dir(os.path.dirname(path))
        return True

    # -- signatures ----------------------------------------------------------------------
    # A version's signatures as the registry had them at the last sync that could ask. They are
    # only data: model_signature decides whether one is valid and trusted.
    def signature_dir(self, model, digest):
        base = _own_dir(os.path.join(self.model_dir(model), SIGNATURES_DIR))
        return _own_dir(os.path.join(base, _hex(digest)))

    def signatures(self, model, digest):
        """[(bundle sha256 hex, bytes)] of the signatures kept for digest of model, by name.
        Only regular files named <hex>.json whose content hashes to their name are returned."""
        base = self.signature_dir(model, digest)
        found = []
        for name in sorted(os.listdir(base)) if _is_real_dir(base) else []:
            stem = name[:-5] if name.endswith(".json") else ""
            if not HEX_RE.match(stem):
                continue
            data = _read_regular(os.path.join(base, name), MAX_SIGNATURE_BYTES)
            if data is not None and hashlib.sha256(data).hexdigest() == stem:
                found.append((stem, data))
        return found[:MAX_SIGNATURES]

    def save_signatures(self, model, digest, bundles, uid=-1, gid=-1, apply=True):
        """Keep exactly bundles (a list of bytes) as digest's signatures; True when that changed.

        Owner uid, group gid (-1: this run's), modes 0750/0640; at most MAX_SIGNATURES bundles of
        at most MAX_SIGNATURE_BYTES each are kept (more are refused by the caller)."""
        wanted = {hashlib.sha256(data).hexdigest(): data for data in bundles[:MAX_SIGNATURES]
                  if len(data) <= MAX_SIGNATURE_BYTES}
        have = dict(self.signatures(model, digest))
        base = self.signature_dir(model, digest)
        names = os.listdir(base) if _is_real_dir(base) else []
        stray = [n for n in names if n[:-5] not in wanted or not n.endswith(".json")]
        if set(have) == set(wanted) and not stray:
            return False
        if not apply:
            return True
        for directory in (self.root, self.model_dir(model), os.path.dirname(base), base):
            if not os.path.isdir(directory):
                os.makedirs(directory, exist_ok=True)
                os.chmod(directory, 0o750)
                os.lchown(directory, uid, gid)
        for path in (os.path.dirname(base), base):
            os.lchown(path, uid, gid)
            os.chmod(path, 0o750)
        for name in stray:
            path = os.path.join(base, name)
            if _is_real_dir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        for stem, data in wanted.items():
            if stem not in have:
                path = os.path.join(base, stem + ".json")
                write_file_atomic(path, data)
                os.lchown(path, uid, gid)
        fsync_dir(base)
        return True

    def forget_signatures(self, model, digest):
        base = self.signature_dir(model, digest)
        if _is_real_dir(base):
            shutil.rmtree(base)

    # -- ownership -----------------------------------------------------------------------
    def settle_ownership(self, model, uid=-1, gid=-1, apply=True):
        """Owner uid, group gid (-1: leave), modes 0750 (dirs) / 0640 (files, 0750 executable)
        for the store's directories and the model's versions, signatures and links (not its
        rejected/).

        Returns True when anything differed (also when apply is false: check mode).
        """
        base = self.model_dir(model)
        paths = [self.root, os.path.dirname(self.blobs), self.blobs, base]
        paths += [os.path.join(base, link) for link in ("current", "previous")]
        for top in ("versions", SIGNATURES_DIR):
            for dirpath, dirs, names in os.walk(os.path.join(base, top)):
                paths.append(dirpath)
                paths.extend(os.path.join(dirpath, name) for name in names)
                paths.extend(os.path.join(dirpath, name) for name in dirs  # links to directories
                             if os.path.islink(os.path.join(dirpath, name)))
        differed = False
        for path in paths:
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            want_uid = info.st_uid if uid == -1 else uid
            want_gid = info.st_gid if gid == -1 else gid
            if stat.S_ISLNK(info.st_mode):
                mode = None
            elif stat.S_ISDIR(info.st_mode) or info.st_mode & stat.S_IXUSR:
                mode = 0o750
            else:
                mode = 0o640
            if (info.st_uid, info.st_gid) != (want_uid, want_gid):
                differed = True
                if apply:
                    os.lchown(path, want_uid, want_gid)
            if mode is not None and stat.S_IMODE(info.st_mode) != mode:
                differed = True
                if apply:
                    os.chmod(path, mode)
        return differed

    # -- retention -----------------------------------------------------------------------
    def prune(self, model, keep):
        """Keep the newest `keep` versions and whatever current/previous point at."""
        pinned = {self.current(model), self.previous(model)}
        removed = []
        for index, (digest, _record) in enumerate(self.versions(model)):
            if index >= keep and digest not in pinned:
                shutil.rmtree(self.version_dir(model, digest))
                self.forget_signatures(model, digest)
                removed.append(digest)
        return removed

    def referenced_blobs(self):
        refs = set()
        for model in self.models():
            for _digest, record in self.versions(model):
                refs.update(record.get("blobs", []))
        return refs

    def collect_garbage(self, keep=()):
        """Delete blobs no staged version refers to, and partial downloads, except those of the
        digests in keep (the image being synced: what a broken run left resumes). Only names of
        blobs are touched. Returns bytes freed."""
        if not os.path.isdir(_own_dir(self.blobs)):
            return 0
        refs = {_hex(d) for d in self.referenced_blobs()}
        wanted = {_hex(d) for d in keep}
        freed = 0
        for name in os.listdir(self.blobs):
            partial = name.endswith(".partial")
            blob = name[:-len(".partial")] if partial else name
            if not HEX_RE.match(blob) or blob in wanted or (blob in refs and not partial):
                continue
            path = os.path.join(self.blobs, name)
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                continue  # not ours to remove
            freed += info.st_size
            os.unlink(path)
        if freed:
            records = self._read_verified()
            kept = {k: v for k, v in records.items() if k in refs | wanted}
            if kept != records:
                write_file_atomic(self._verified_path(),
                                  json.dumps(kept, sort_keys=True).encode())
        return freed

    # -- checks --------------------------------------------------------------------------
    def verify_version(self, model, digest):
        """Re-hash every file of a version; return a list of problems (empty when intact)."""
        vdir = self.version_dir(model, digest)
        record = self.read_record(vdir)
        if not record:
            return [f"{model} {digest}: no version record"]
        problems = []
        for rel, info in sorted(record.get("files", {}).items()):
            problem = _entry_problem(vdir, rel, info, full=True)
            if problem:
                problems.append(f"{model} {digest[:19]}…: {rel} {problem}")
        return problems


def _entry_problem(vdir, rel, info, full):
    """What is wrong with one entry of a version record, or None: a symlink ({"link"}) must be
    that link; a file ({"digest", "size"}) a regular file of that size and, when full, content."""
    path = os.path.join(vdir, rel)
    try:
        found = os.lstat(path)
    except OSError:
        return "is missing"
    if "link" in info:
        if not stat.S_ISLNK(found.st_mode) or os.readlink(path) != info["link"]:
            return f"is not the link to {info['link']!r} it was"
        return None
    if not stat.S_ISREG(found.st_mode) or found.st_size != info.get("size"):
        return f"is not the file of {info.get('size')} bytes it was"
    if full and file_digest(path) != info.get("digest"):
        return f"does not match {info.get('digest')}"
    return None
