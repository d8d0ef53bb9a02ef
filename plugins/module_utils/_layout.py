# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: an OCI image layout directory (an offline bundle's images/) read
like a registry, and the manifest checks both clients share: at most MAX_MANIFEST_BYTES, and a
manifest asked for by digest hashes to it. A layout may come from a stranger's USB stick: its
files are opened only when they are regular files, and index.json and manifests are size-checked
before they are read."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import (
    MAX_MANIFEST_BYTES, BadDigest, digest_hex)
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    OCI_MANIFEST, REF_NAME, DigestMismatch, NotFound, OCIError, Unreachable)


def read_capped(handle, limit):
    """Up to limit + 1 bytes of a response or file: more than limit means 'too large'."""
    chunks, count = [], 0
    while count <= limit:
        chunk = handle.read(min(1 << 16, limit + 1 - count))
        if not chunk:
            break
        chunks.append(chunk)
        count += len(chunk)
    return b"".join(chunks)


def check_manifest(what, body, digest=None):
    """The digest of a manifest body; refuse one too large, or one not hashing to digest."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise OCIError(f"{what} is larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if digest is not None and actual != digest:
        raise DigestMismatch(f"{what} hashes to {actual}; the copy is corrupt or was altered")
    return actual


class LayoutClient:
    """An OCI image layout directory (as in an offline bundle), read like a registry.

    Images are found by the org.opencontainers.image.ref.name annotation of index.json, which
    may be 'repo:tag' or just 'tag', or by digest.
    """

    def __init__(self, path):
        self.path = path
        self.name = f"oci-layout:{path}"

    def _open(self, path, what):
        """A regular file open for reading (never a FIFO or device: no open that blocks), and
        never through a symlink: one could make root read any file on the host (its hash would
        then be shown)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OCIError(f"{self.name}: {what} is a symlink; refusing it", self.name) from exc
            raise
        handle = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise OCIError(f"{self.name}: {what} is not a regular file; refusing it", self.name)
        return handle

    def _read_small(self, path, what):
        with self._open(path, what) as handle:
            if os.fstat(handle.fileno()).st_size > MAX_MANIFEST_BYTES:
                raise OCIError(f"{self.name}: {what} is larger than {MAX_MANIFEST_BYTES} bytes; "
                               "refusing it", self.name)
            return read_capped(handle, MAX_MANIFEST_BYTES)

    def _index(self):
        try:
            json.loads(self._read_small(os.path.join(self.path, "oci-layout"), "oci-layout"))
            index = json.loads(self._read_small(os.path.join(self.path, "index.json"), "index.json"))
        except (OSError, ValueError, RecursionError) as exc:
            raise Unreachable(f"{self.name} is not a readable OCI image layout: {exc}", self.name)
        manifests = index.get("manifests") if isinstance(index, dict) else None
        return [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []

    def _blob_path(self, digest):
        try:
            return os.path.join(self.path, "blobs", "sha256", digest_hex(digest))
        except BadDigest as exc:
            raise OCIError(f"{self.name}: {exc.msg}", self.name)

    def get_manifest(self, repo, reference):
        """-> (body bytes, media type, digest); the body always hashes to the digest it is under."""
        media_type = ""
        what = f"manifest {repo}@{reference}"
        if ":" not in reference:  # a tag
            names = (f"{repo}:{reference}", reference)
            found = [m for m in self._index() if (m.get("annotations") or {}).get(REF_NAME) in names]
            if not found:
                raise NotFound(f"{self.name} has no image named {repo}:{reference}", self.name)
            what = f"manifest {repo}:{reference}"
            reference, media_type = found[0].get("digest"), found[0].get("mediaType") or ""
        path = self._blob_path(reference)
        try:
            body = self._read_small(path, what)
        except OSError:
            raise NotFound(f"{self.name} has no manifest {reference}", self.name)
        digest = check_manifest(f"{self.name}: {what}", body, reference)
        if not media_type:
            try:
                media_type = json.loads(body).get("mediaType") or OCI_MANIFEST
            except (ValueError, RecursionError, AttributeError):
                media_type = OCI_MANIFEST  # parse_manifest names what is wrong with it
        return body, media_type, digest

    def open_blob(self, repo, digest, offset=0):
        path = self._blob_path(digest)
        try:
            handle = self._open(path, f"blob {digest}")
        except OSError:
            raise NotFound(f"{self.name} has no blob {digest}", self.name)
        handle.seek(offset)
        return handle, 206 if offset else 200
