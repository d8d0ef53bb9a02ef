# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: unpacking a modelcar image's layers without leaving the target.

extract_layers(layers, target, prefix, max_bytes) applies a container image's tar or tar+gzip
layers in order and keeps what lies under prefix (the model path inside the image, such as
"models/") in target. It runs as root and the registry may be hostile, so these rules hold:

* Nothing is ever written, removed or copied through a symlink. A path is walked one component
  at a time with directory descriptors opened O_DIRECTORY|O_NOFOLLOW, and every entry is made,
  opened or removed relative to its directory's descriptor (dir_fd). A member, hard-link source
  or whiteout whose path goes through a symlink (or a non-directory) is refused.
* Names are refused anywhere in a layer when absolute, holding a NUL or a '..' component; under
  prefix also when holding a backslash, longer than 4096 bytes, with a component longer than
  255 bytes, deeper than 128 components, or with a '.wh.' name for a directory.
* Regular files: an existing entry of that name is removed first (never followed), then the file
  is made O_EXCL|O_NOFOLLOW, mode 0640 (0750 when its owner may execute it); setuid, setgid and
  sticky bits are never kept. Directories are 0750.
* Symlinks: relative ones only, made with dir_fd and never followed while unpacking; one whose
  text alone climbs above target is refused at once. Once every layer is applied, each symlink
  must resolve, without ever stepping above target, to an existing entry inside target (and
  os.path.realpath must agree); otherwise the image is refused.
* Hard links: the source must be a regular file already unpacked under prefix, reached by the
  same walk; the destination is removed first and written as a copy (O_EXCL|O_NOFOLLOW).
* Whiteouts (OCI): ".wh.<name>" hides <name>, ".wh..wh..opq" hides the entries of its directory;
  like overlayfs, they hide what lower layers made, not what their own layer made. ".wh.",
  ".wh..", ".wh..." and any victim that is not a plain name are refused. Target itself is never
  removed: a whiteout of prefix or of a directory above it empties target instead.
* Devices, FIFOs, sparse files and unknown types under prefix are refused. A later member
  replaces an earlier one of the same name (a file a directory and the other way round).
* Budgets for the whole image: max_bytes of file content written (regular files and hard-link
  copies: we count bytes written, so gzip and hard-link bombs stop there), MAX_MEMBERS entries
  under prefix, and no single read of the tar stream above MAX_READ (tarfile reads a long name
  or a pax header whole, in the size its header claims).
* Members outside prefix are read past and ignored; the prefix directory's own entry too.

Refusals raise HostileLayer naming the layer ("layer sha256:0123456789ab…") and the member; a
full disk or a failing host raises LayerError.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import stat
import tarfile
import zlib

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import file_digest
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError

MAX_MEMBERS = 100000  # entries under prefix, per image
MAX_NAME = 4096  # bytes, as PATH_MAX
MAX_COMPONENT = 255  # bytes, as NAME_MAX
MAX_DEPTH = 128  # components under prefix: bounds the recursion and open descriptors below
MAX_READ = 16 << 20  # the largest single read tarfile may ask of the stream
MAX_LINK_HOPS = 40  # as the kernel's MAXSYMLINKS
CHUNK = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
GZIP_MAGIC = b"\x1f\x8b"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Our own file operations fail with these when a layer's shape is wrong, not when the host is.
SHAPE_ERRNOS = frozenset({errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                          errno.ENOTEMPTY, errno.ENAMETOOLONG, errno.EINVAL})
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# What tarfile and gzip raise on a damaged or crafted stream.
BAD_STREAM = (tarfile.TarError, EOFError, ValueError, zlib.error, OverflowError)


class LayerError(EdgemlError):
    """A layer could not be unpacked (disk full, a failing host); .msg says which and where."""


class HostileLayer(LayerError):
    """A layer holds something the extractor refuses; .msg names the layer and the member."""


def extract_layers(layers, target, prefix, max_bytes, max_members=MAX_MEMBERS):
    """Apply layers [(blob path, digest)] in order into target (an empty directory), keeping
    what lies under prefix (a path in the image such as "models/"; "/" keeps everything).

    Returns {relpath: {"digest": "sha256:…", "size": n}} for regular files and
    {relpath: {"link": text}} for symlinks, relpath relative to target.
    """
    image = _Image(target, prefix, max_bytes, max_members)
    try:
        for blob, digest in layers:
            image.apply(blob, digest)
    finally:
        image.close()
    return _inventory(target, image)


class _Image:
    """One image being unpacked: target's descriptor, the budgets, the layer at hand."""

    def __init__(self, target, prefix, max_bytes, max_members):
        self.target = target
        self.prefix = _prefix_parts(prefix)
        self.max_bytes = max_bytes
        self.bytes_left = max_bytes
        self.max_members = max_members
        self.members_left = max_members
        self.where = "the image"
        self.made = set()  # paths (tuples under target) the current layer made
        self.hidden = set()  # what the current layer's whiteouts hid already
        self.link_layers = {}  # symlink path -> the layer that made it (for messages)
        self.root_fd = os.open(target, DIR_FLAGS)

    def close(self):
        os.close(self.root_fd)

    def refuse(self, what, problem):
        raise HostileLayer(f"{self.where}: {what} {problem}")

    # -- one layer ------------------------------------------------------------------------
    def apply(self, blob, digest):
        self.where = f"layer {digest[:19]}…"
        self.made, self.hidden = set(), set()
        try:
            with _layer_tar(blob, self.where) as tar:
                while True:
                    member = tar.next()
                    if member is None:
                        break
                    del tar.members[:]  # tarfile keeps every header; a layer may hold millions
                    self._member(tar, member)
        except LayerError:
            raise
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise LayerError(f"disk full while unpacking {self.where} into "
                                 f"{self.target}") from exc
            if exc.errno is not None and exc.errno not in SHAPE_ERRNOS:
                raise LayerError(f"could not unpack {self.where} into {self.target}: "
                                 f"{exc}") from exc
            raise HostileLayer(f"{self.where} could not be unpacked: {exc}") from exc
        except BAD_STREAM as exc:
            raise HostileLayer(f"{self.where} could not be unpacked: {exc}") from exc

    def _member(self, tar, member):
        what = f"member {_show(member.name)}"
        parts = self._parts(member.name, what)
        if member.size < 0:
            self.refuse(what, f"claims {member.size} bytes")
        if parts and parts[-1].startswith(WHITEOUT):
            self._whiteout(member.name, parts)
            return
        rel = self._under_prefix(parts)
        if not rel:
            return  # outside the model path, or the model directory's own entry
        self._admit(member.name, rel, what)
        if member.issparse():  # before isreg(), which sparse members also pass
            self.refuse(what, "is a sparse file")
        elif member.isreg():
            self._file(tar, member, rel, what)
        elif member.isdir():
            self._directory(rel, what)
        elif member.issym():
            self._symlink(member, rel)
        elif member.islnk():
            self._hardlink(member, rel)
        elif member.isdev():
            self.refuse(what, "is a device or FIFO")
        else:
            self.refuse(what, f"has an unsupported type {member.type!r}")

    # -- names ----------------------------------------------------------------------------
    def _parts(self, name, what):
        """The components of a name in a layer; refuses what no layer may name anywhere."""
        if "\0" in name:
            self.refuse(what, "has a NUL in its name")
        if name.startswith("/"):
            self.refuse(what, "has an absolute path")
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if ".." in parts:
            self.refuse(what, "climbs out with '..'")
        return parts

    def _under_prefix(self, parts):
        """parts relative to prefix (empty for prefix itself), or None when outside it."""
        size = len(self.prefix)
        return parts[size:] if parts[:size] == self.prefix else None

    def _admit(self, name, rel, what):
        """Count an entry under prefix and check its name as a path we will make."""
        self.members_left -= 1
        if self.members_left < 0:
            self.refuse(what, f"is past {self.max_members} entries under the model path")
        if "\\" in name:
            self.refuse(what, "has a backslash in its name")
        if len(os.fsencode(name)) > MAX_NAME:
            self.refuse(what, f"has a name longer than {MAX_NAME} bytes")
        if any(len(os.fsencode(part)) > MAX_COMPONENT for part in rel):
            self.refuse(what, f"has a component longer than {MAX_COMPONENT} bytes")
        if len(rel) > MAX_DEPTH:
            self.refuse(what, f"is nested more than {MAX_DEPTH} directories deep")
        if any(part.startswith(WHITEOUT) for part in rel[:-1]):
            self.refuse(what, "has a whiteout name ('.wh.') for a directory")

    def shown(self, rel):
        return repr("/".join(self.prefix + tuple(rel)))

    def _mark(self, rel):
        """Remember that this layer made rel (and so its directories): whiteouts spare them."""
        self.made.update(rel[:end] for end in range(1, len(rel) + 1))

    def _charge(self, size, what):
        if size > self.bytes_left:
            raise HostileLayer(f"{self.where}: the image unpacks to more than {self.max_bytes} "
                               f"bytes under the model path (at {what}); refusing it (raise "
                               "max_extract_bytes if the model really is that large)")
        self.bytes_left -= size

    # -- the no-follow walk ---------------------------------------------------------------
    @contextlib.contextmanager
    def _walk(self, rel, what, create):
        """The descriptor of directory rel under target, reached without following a link.

        Missing directories are made when create, else the walk yields None; so it does when a
        component is not a directory and nothing is to be made. A symlink is always refused.
        """
        fd = os.dup(self.root_fd)
        try:
            for depth, name in enumerate(rel):
                child = self._step(fd, name, rel[:depth + 1], what, create)
                os.close(fd)
                fd = child
                if fd is None:
                    break
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def _step(self, fd, name, path, what, create):
        mode = _lmode(fd, name)
        if mode is None:
            if not create:
                return None
            os.mkdir(name, 0o750, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.fchmod(child, 0o750)  # mkdir's mode went through the umask
            return child
        if stat.S_ISLNK(mode):
            self.refuse(what, f"goes through the symlink {self.shown(path)}")
        if not stat.S_ISDIR(mode):
            if not create:
                return None
            self.refuse(what, f"goes through {self.shown(path)}, which is not a directory")
        return os.open(name, DIR_FLAGS, dir_fd=fd)

    @contextlib.contextmanager
    def _new_file(self, rel, what, mode):
        """A descriptor of a new regular file at rel; whatever had that name is removed first."""
        with self._walk(rel[:-1], what, create=True) as parent:
            _remove(parent, rel[-1])
            fd = os.open(rel[-1], NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            os.fchmod(fd, mode)
            yield fd
        finally:
            os.close(fd)
        self._mark(rel)

    # -- member types ---------------------------------------------------------------------
    def _file(self, tar, member, rel, what):
        self._charge(member.size, what)
        source = tar.extractfile(member)
        with self._new_file(rel, what, _file_mode(member.mode)) as out:
            left = member.size
            while left:  # never past the size its header gives
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    self.refuse(what, "ends before the size its header gives")
                _write_all(out, chunk)
                left -= len(chunk)

    def _directory(self, rel, what):
        with self._walk(rel[:-1], what, create=True) as parent:
            mode = _lmode(parent, rel[-1])
            if mode is not None and not stat.S_ISDIR(mode):
                os.unlink(rel[-1], dir_fd=parent)  # a file or symlink: replaced, not followed
                mode = None
            if mode is None:
                os.mkdir(rel[-1], 0o750, dir_fd=parent)
            fd = os.open(rel[-1], DIR_FLAGS, dir_fd=parent)
            try:
                os.fchmod(fd, 0o750)
            finally:
                os.close(fd)
        self._mark(rel)

    def _symlink(self, member, rel):
        link = member.linkname
        what = f"symlink {_show(member.name)} -> {_show(link)}"
        if not link or "\0" in link or len(os.fsencode(link)) > MAX_NAME:
            self.refuse(what, "has an empty, overlong or odd target")
        if link.startswith("/"):
            self.refuse(what, "points outside the model directory (an absolute target)")
        if _climbs_above(len(rel) - 1, link):
            self.refuse(what, "points outside the model directory")
        with self._walk(rel[:-1], what, create=True) as parent:
            _remove(parent, rel[-1])
            os.symlink(link, rel[-1], dir_fd=parent)
        self._mark(rel)
        self.link_layers[rel] = self.where

    def _hardlink(self, member, rel):
        what = f"hard link {_show(member.name)} -> {_show(member.linkname)}"
        source = self._under_prefix(self._parts(member.linkname, what))
        if not source:
            self.refuse(what, "points outside the model path")
        fd = self._open_source(source, what)
        try:
            info = os.fstat(fd)
            self._charge(info.st_size, what)
            with self._new_file(rel, what, _file_mode(info.st_mode)) as out:
                left = info.st_size
                while left:
                    chunk = os.read(fd, min(CHUNK, left))
                    if not chunk:
                        self.refuse(what, "has a source that shrank while copied")
                    _write_all(out, chunk)
                    left -= len(chunk)
        finally:
            os.close(fd)

    def _open_source(self, source, what):
        with self._walk(source[:-1], what, create=False) as parent:
            mode = None if parent is None else _lmode(parent, source[-1])
            if mode is None:
                self.refuse(what, "has no source inside the model directory")
            if not stat.S_ISREG(mode):
                self.refuse(what, "has a source that is not a regular file")
            return os.open(source[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)

    # -- whiteouts ------------------------------------------------------------------------
    def _whiteout(self, name, parts):
        what = f"whiteout {_show(name)}"
        parent, leaf = parts[:-1], parts[-1]
        if leaf == OPAQUE:
            victim, hidden = None, parent  # hidden: the directory whose entries go
        else:
            victim = leaf[len(WHITEOUT):]
            if victim in ("", ".", "..") or "/" in victim or victim.startswith(WHITEOUT):
                self.refuse(what, "does not name an entry")
            hidden = parent + (victim,)
        if self.prefix[:len(hidden)] == hidden:  # prefix itself, or a directory above it
            self._admit(name, self._under_prefix(parts) or (), what)
            if self._first_time("entries", ()):
                self._hide_entries((), what)
            return
        rel = self._under_prefix(hidden)
        if rel is None:
            return  # outside the model path
        self._admit(name, self._under_prefix(parts), what)
        if not self._first_time("entries" if victim is None else "entry", rel):
            return
        if victim is None:
            self._hide_entries(rel, what)
        else:
            with self._walk(rel[:-1], what, create=False) as fd:
                if fd is not None:
                    self._hide(fd, rel[-1], rel)

    def _first_time(self, kind, rel):
        """False when this layer's whiteouts hid rel already: all that is left there, this
        layer made, so a repeat would only walk the tree again (thousands of repeats of one
        whiteout made a 400 KiB layer take hours)."""
        if (kind, rel) in self.hidden:
            return False
        self.hidden.add((kind, rel))
        return True

    def _hide_entries(self, rel, what):
        with self._walk(rel, what, create=False) as fd:
            if fd is not None:
                for name in os.listdir(fd):
                    self._hide(fd, name, rel + (name,))

    def _hide(self, parent, name, rel):
        """Remove what lower layers made at rel, keeping what this layer made."""
        mode = _lmode(parent, name)
        if mode is None:
            return
        if rel not in self.made:
            _remove(parent, name)
        elif stat.S_ISDIR(mode):
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
            try:
                for child in os.listdir(fd):
                    self._hide(fd, child, rel + (child,))
            finally:
                os.close(fd)


# -- the tar stream ---------------------------------------------------------------------------
class _ForwardReader:
    """The layer's (decompressed) stream as tarfile sees it: forward only, bounded reads.

    tarfile reads a GNU long name or a pax header whole, in the size its header claims, which a
    crafted layer can make gigabytes (a few bytes once gzipped); and a negative member size
    would send it back over headers it already read, for ever.
    """

    def __init__(self, stream, where):
        self.stream = stream
        self.where = where

    def read(self, size=-1):
        if size is None or not 0 <= size <= MAX_READ:
            raise HostileLayer(f"{self.where}: a tar header claims {size} bytes; refusing it")
        return self.stream.read(size)

    def tell(self):
        return self.stream.tell()

    def seek(self, offset, whence=os.SEEK_SET):
        if whence != os.SEEK_SET or offset < self.stream.tell():
            raise HostileLayer(f"{self.where}: the tar stream goes backwards; refusing it")
        return self.stream.seek(offset)


@contextlib.contextmanager
def _layer_tar(blob, where):
    try:
        raw = open(blob, "rb")  # pylint: disable=consider-using-with
    except OSError as exc:
        raise LayerError(f"could not read {where} at {blob}: {exc}") from exc
    with raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else contextlib.nullcontext(raw) \
                as stream:
            with tarfile.open(fileobj=_ForwardReader(stream, where), mode="r:",
                              encoding="utf-8", errors="surrogateescape") as tar:
                yield tar


# -- the finished tree ------------------------------------------------------------------------
def _inventory(target, image):
    """Regular files (digest, size) and symlinks (text) of the tree; every link checked."""
    files = {}
    for dirpath, dirs, names in os.walk(target):  # never descends a symlink
        for name in dirs + names:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, target)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                link = os.readlink(path)
                if not _link_inside(target, rel, link):
                    parts = tuple(rel.split(os.sep))
                    where = image.link_layers.get(parts, "the image")
                    raise HostileLayer(f"{where}: symlink {image.shown(parts)} -> {_show(link)} "
                                       "points outside the model directory or at nothing once "
                                       "every layer is applied; refusing the image")
                files[rel] = {"link": link}
            elif stat.S_ISREG(info.st_mode):
                files[rel] = {"digest": file_digest(path), "size": info.st_size}
    return dict(sorted(files.items()))


def _link_inside(target, rel, link):
    top = os.path.realpath(target)
    real = os.path.realpath(os.path.join(target, rel))
    return (_resolves_beneath(target, rel.split(os.sep)[:-1], link)
            and (real == top or real.startswith(top + os.sep)) and os.path.exists(real))


def _resolves_beneath(root, start, text):
    """True when link text, in directory start (components under root), reaches an existing
    entry as the kernel resolves it, without ever stepping above root on the way."""
    here = list(start)  # real directories only, so lstat below follows no link
    pending = text.split("/")[::-1]
    hops = 0
    if text.startswith("/"):
        return False
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return False
            here.pop()
            continue
        path = os.path.join(root, *here, part)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            hops += 1
            link = os.readlink(path)
            if hops > MAX_LINK_HOPS or link.startswith("/"):
                return False
            pending.extend(link.split("/")[::-1])
        elif stat.S_ISDIR(mode):
            here.append(part)
        else:
            return not pending  # a file ends a path: "file/", "file/.." do not resolve
    return True


# -- small helpers ----------------------------------------------------------------------------
def _prefix_parts(prefix):
    parts = tuple(part for part in prefix.split("/") if part not in ("", "."))
    if ".." in parts or "\0" in prefix:
        raise LayerError(f"model path {prefix!r} must be a plain path inside the image")
    return parts


def _climbs_above(depth, link):
    """True when link, read as text from a directory depth levels below target, leaves it."""
    for part in link.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _lmode(dir_fd, name):
    """st_mode of name in dir_fd (the entry itself, not what a link points at), None if absent."""
    try:
        return os.lstat(name, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        return None


def _remove(dir_fd, name):
    """Remove name from dir_fd, a directory with all it holds; links are removed, not followed."""
    mode = _lmode(dir_fd, name)
    if mode is None:
        return
    if stat.S_ISDIR(mode):
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            for child in os.listdir(fd):
                _remove(fd, child)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _file_mode(mode):
    return 0o750 if mode & stat.S_IXUSR else 0o640


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _show(name):
    return repr(name if len(name) <= 120 else name[:117] + "…")
