# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: blob downloads: streamed, verified while streaming, resumable.

A source may lie about a blob: it may send more than the descriptor declares, or never stop.
Reading stops one byte past the declared size (past max_bytes when no size is declared),
counted over the partial file and every resume, and such a blob is refused.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import threading
import time
from http.client import HTTPException

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import BadDigest, digest_hex
from ansible_collections.edgeml.fleet.plugins.module_utils._files import publish
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import DigestMismatch, OCIError, Unreachable

CHUNK = 1 << 20
WRITEBACK = 32 << 20  # start writing to disk every this many bytes, so the final fsync is short
MAX_UNSIZED_BLOB = 16 << 30  # the cap on a blob whose descriptor declares no size


class BrokenTransfer(Exception):
    """A download ended early; it can resume where it stopped."""


def _stream(resp, out, hasher, budget, progress=None):
    """Copy at most budget bytes of resp to out, hashing; the write and the hash of one chunk
    overlap the next read.

    Returns the bytes written. hashlib, file writes and socket reads all release the GIL, so
    on two cores this runs near the speed of the network instead of the sum of the three.
    """
    chunks = queue.Queue(maxsize=8)
    errors = []

    def sink():
        unsynced = 0
        while True:
            chunk = chunks.get()
            if chunk is None:
                return
            if not errors:
                try:
                    out.write(chunk)
                    hasher.update(chunk)
                    unsynced += len(chunk)
                    if unsynced >= WRITEBACK:
                        unsynced = 0
                        _start_writeback(out)
                except OSError as exc:
                    errors.append(exc)

    writer = threading.Thread(target=sink, daemon=True)
    writer.start()
    count = 0
    try:
        while not errors and count < budget:
            chunk = resp.read(min(CHUNK, budget - count))
            if not chunk:
                break
            chunks.put(chunk)
            count += len(chunk)
            if progress:
                progress(len(chunk))
    finally:
        chunks.put(None)
        writer.join()
    if errors:
        raise errors[0]
    return count


def _start_writeback(out):
    """Ask the kernel to start writing what is written so far (asynchronously)."""
    out.flush()
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _open_partial(partial, append):
    """The partial file for writing: never through a link, never a FIFO or device (O_NONBLOCK:
    a FIFO without a reader fails instead of blocking), made if missing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(partial, flags | (os.O_APPEND if append else os.O_TRUNC), 0o640)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", partial)
    return os.fdopen(fd, "ab" if append else "wb")


def _resume(partial, limit, hasher):
    """Bytes already in the partial file (fed to hasher), to resume after; 0 to start afresh.

    Only a regular file of at most limit bytes is resumed. Anything else found under that
    name (a symlink, FIFO or device planted for root to follow) is removed, not opened; a
    directory there is refused. The partial file exists afterwards (an empty blob needs it).
    """
    try:
        info = os.lstat(partial)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OCIError(f"{partial} is a directory, not a partial download; remove it")
    if info is not None and (not stat.S_ISREG(info.st_mode) or info.st_size > limit):
        os.unlink(partial)
        info = None
    with _open_partial(partial, append=True):
        pass  # made if missing, through no link
    if info is None:
        return 0
    fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            hasher.update(chunk)
        return handle.tell()


def download_blob(client, repo, digest, dest, size=None, retries=2, progress=None,
                  max_bytes=MAX_UNSIZED_BLOB):
    """Stream a blob to dest, checking sha256 while streaming; resume from dest.partial.

    dest is the caller's store path of the blob, named by the digest's hex. At most size + 1
    bytes (max_bytes + 1 when size is None) reach dest.partial over all resumes; a source that
    sends more is refused. Returns the number of bytes fetched over the wire. dest appears only
    when verified.
    """
    if os.path.basename(dest) != digest_hex(digest):
        raise BadDigest(f"blob {digest}: the download target {dest} is not named by its digest")
    limit = max_bytes if size is None else size
    partial = dest + ".partial"
    hasher = hashlib.sha256()
    offset = resumed = _resume(partial, limit, hasher)
    fetched = 0
    attempt, failed_at = 0, -1
    while True:
        if size is not None and offset == size:
            break
        start = offset
        try:
            resp, status = client.open_blob(repo, digest, offset)
            if status == 416:  # the partial file already holds everything
                break
            if status == 200 and offset:
                offset = start = 0  # the server ignored Range: start again
                hasher = hashlib.sha256()
            with _open_partial(partial, append=bool(offset)) as out:
                offset = start + _stream(resp, out, hasher, limit + 1 - start, progress)
            resp.close()
            if offset > limit:
                os.unlink(partial)
                declared = f"the {size} bytes its descriptor declares" if size is not None else \
                    f"{max_bytes} bytes, the limit for a blob of undeclared size"
                raise DigestMismatch(f"{client.name}: blob {digest} of {repo} is longer than "
                                     f"{declared}; stopped reading and refused it", client.name)
            if size is None or offset >= size:
                fetched += offset - start
                break
            raise BrokenTransfer(f"the connection closed after {offset} of {size} bytes")
        except OCIError:
            raise
        except (OSError, HTTPException, BrokenTransfer) as exc:
            if getattr(exc, "errno", None) == 28:  # ENOSPC: keep nothing half-written
                if os.path.exists(partial):
                    os.unlink(partial)
                raise OCIError(f"disk full while writing blob {digest} to {os.path.dirname(dest)}: "
                               f"free some space (model_info shows what the store holds)")
            # What reached the file before the break was hashed too: resume after it.
            offset = os.path.getsize(partial) if os.path.exists(partial) else 0
            fetched += max(0, offset - start)
            attempt = 1 if offset > failed_at else attempt + 1  # progress resets the count
            failed_at = offset
            if attempt > retries:
                raise Unreachable(f"{client.name}: blob {digest} broke off after {offset} bytes: "
                                  f"{exc}", client.name)
            time.sleep(min(0.5 * 2 ** (attempt - 1), 10))
    if "sha256:" + hasher.hexdigest() != digest:
        os.unlink(partial)
        if resumed:  # the bytes resumed may be another source's (a mirror's): once more, whole
            return fetched + download_blob(client, repo, digest, dest, size, retries, progress,
                                           max_bytes)
        raise DigestMismatch(f"{client.name}: blob {digest} of {repo} failed verification: its "
                             f"content hashes to sha256:{hasher.hexdigest()}; the registry's copy is "
                             f"corrupt or was altered. Nothing was activated.", client.name)
    if size is not None and offset != size:
        os.unlink(partial)
        raise DigestMismatch(f"{client.name}: blob {digest} is {offset} bytes, the manifest says "
                             f"{size}", client.name)
    publish(partial, dest)  # the bytes reach the disk before the verified name does
    return fetched
