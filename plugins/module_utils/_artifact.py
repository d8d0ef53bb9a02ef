# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: a directory of files as an OCI artifact, pushed and pulled (pull
mode: a site's signed bundle, a host's result report). Standard library only: runs on hosts.

The artifact is an OCI image manifest with an artifactType, the empty config and one layer per
file, named by its path relative to the directory (org.opencontainers.image.title). The same
files always give the same manifest, so an unchanged directory pushes nothing and a host's
check for news is one HEAD request.

The registry and anything between it and the host are hostile: every name in a pulled
manifest is checked before it becomes a path (relative, plain characters, no '..', no file
that is also a directory), the number of files and their total size are capped before anything
is fetched, and each blob is checked against its digest while it streams (resumable) and again
when it is copied out of the cache. What a pull produces is a new directory; it replaces the old
one only when complete. Trust (a bundle's signature, its freshness) is the caller's to check
(bundle_pull) before swap_in, never this transport's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import digest_hex, file_digest
from ansible_collections.edgeml.fleet.plugins.module_utils._files import fsync_dir, fsync_tree
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    NotFound, OCIError, OCI_MANIFEST, REPO_RE, TAG_RE, TITLE, parse_manifest)
from ansible_collections.edgeml.fleet.plugins.module_utils._transfer import download_blob

BUNDLE_TYPE = "application/vnd.edgeml.bundle.v1"
REPORT_TYPE = "application/vnd.edgeml.report.v1"
FILE_TYPE = "application/vnd.edgeml.file"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
# The characters a bundle's file names may use (bootstrap.sh allows the same), '/' between parts.
PART_RE = re.compile(r"^[A-Za-z0-9._+@,=~-]{1,255}$")
MAX_DEPTH = 16
MAX_NAME = 1024  # a whole relative path: well under PATH_MAX once under the destination
MAX_FILES = 10000  # a bundle holds some dozens


class NotTheArtifact(OCIError):
    """The tag holds something else: another artifact type, an index, a container image."""


def _descriptor(media_type, digest, size, **extra):
    return dict({"mediaType": media_type, "digest": digest, "size": size}, **extra)


def _empty():
    return _descriptor(EMPTY_TYPE, "sha256:" + hashlib.sha256(EMPTY).hexdigest(), len(EMPTY))


def check_ref(repo, tag):
    """OCIError unless repo and tag are valid OCI names."""
    if not REPO_RE.match(repo) or not TAG_RE.match(tag):
        raise OCIError(f"repository {repo!r} or tag {tag!r} is not a valid OCI name")


def tag_digest(client, repo, tag):
    """The digest repo:tag names: one HEAD, or the manifest itself where HEAD gives none."""
    return client.head_manifest(repo, tag) or client.get_manifest(repo, tag)[2]


def file_layers(root):
    """[(descriptor, path)] for every regular file under root, sorted by relative name.

    A link or a special file is refused (a bundle holds neither), as is a name outside the
    plain characters: what is pushed is what a pull accepts.
    """
    found = []
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if os.path.islink(path) or not (os.path.isfile(path) or os.path.isdir(path)):
                raise OCIError(f"{path}: a link or special file; an artifact holds regular files only")
            if not PART_RE.fullmatch(name) or name in (".", ".."):
                raise OCIError(f"{path}: the name uses characters outside letters, digits and ._+@,=~-")
            if os.path.isfile(path):
                found.append((_descriptor(FILE_TYPE, file_digest(path), os.path.getsize(path),
                                          annotations={TITLE: rel}), path))
    found.sort(key=lambda item: item[0]["annotations"][TITLE])
    return found


def manifest_body(layers, artifact_type, annotations=None):
    """The canonical manifest bytes for these layer descriptors."""
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
           "config": _empty(), "layers": layers}
    if annotations:
        doc["annotations"] = dict(annotations)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def push(client, repo, tag, root, artifact_type, annotations=None, check_mode=False):
    """Push root's files as an artifact to repo:tag -> (digest, changed, bytes sent, files).

    When the tag already names the same manifest (one HEAD), nothing is sent.
    """
    layers = file_layers(root)
    body = manifest_body([layer for layer, _path in layers], artifact_type, annotations)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    try:
        current = client.head_manifest(repo, tag)
    except NotFound:
        current = None
    if current == digest:
        return digest, False, 0, len(layers)
    if check_mode:
        return digest, True, 0, len(layers)
    sent = client.push_blob(repo, _empty()["digest"], EMPTY, len(EMPTY))
    for layer, path in layers:
        sent += client.push_blob(repo, layer["digest"], path, layer["size"])
    client.put_manifest(repo, tag, body, OCI_MANIFEST)
    return digest, True, sent, len(layers)


def check_name(name, where):
    """A layer's title as a safe relative path, or OCIError naming it."""
    parts = name.split("/") if isinstance(name, str) and len(name) <= MAX_NAME else []
    if not parts or len(parts) > MAX_DEPTH or not all(
            PART_RE.fullmatch(part) and part not in (".", "..") for part in parts):
        shown = name[:120] if isinstance(name, str) else repr(name)[:120]
        raise OCIError(f"{where}: the file name {shown!r} is not a plain relative path (letters, "
                       f"digits and ._+@,=~- in at most {MAX_DEPTH} parts and {MAX_NAME} characters, "
                       "no part '.' or '..'); refusing the artifact")
    return name


def checked_layers(doc, artifact_type, where, max_bytes):
    """The files a pulled manifest names: [(name, digest, size)], every check done first."""
    if doc.get("artifactType") != artifact_type or "manifests" in doc:
        raise NotTheArtifact(f"{where} is not an {artifact_type} artifact (artifactType "
                             f"{str(doc.get('artifactType'))[:80]!r})")
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) > MAX_FILES:
        raise OCIError(f"{where}: the artifact lists no files or more than {MAX_FILES}")
    files, names, dirs, total = [], set(), set(), 0
    for index, layer in enumerate(layers):
        name = check_name((layer.get("annotations") or {}).get(TITLE), f"{where}: layers[{index}]")
        parents = {"/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)}
        if name in names or name in dirs or parents & names:
            raise OCIError(f"{where}: {name} is named twice, or as both a file and a directory; "
                           "refusing the artifact")
        names.add(name)
        dirs |= parents
        total += layer["size"]
        if total > max_bytes:
            raise OCIError(f"{where}: the artifact's files add up to more than {max_bytes} bytes "
                           "(the limit); refusing it before fetching anything")
        files.append((name, layer["digest"], layer["size"]))
    return files


def fetch_manifest(client, repo, reference, artifact_type, max_bytes):
    """(digest, [(name, digest, size)]) of the artifact at repo:reference, checked."""
    body, media_type, digest = client.get_manifest(repo, reference)
    where = f"{client.name}: {repo}:{reference}"
    doc, media_type = parse_manifest(body, media_type, where)
    if media_type != OCI_MANIFEST:
        raise NotTheArtifact(f"{where} is an image index or Docker image, not an artifact")
    return digest, checked_layers(doc, artifact_type, where, max_bytes)


def needed_space(files, blobs, block=4096):
    """(bytes, inodes) a pull writes: the blobs not in the cache yet and every file assembled,
    each rounded up to whole blocks, and a block and an inode for every directory made."""
    def blocks(size):
        return -(-size // block) * block or block
    missing = {digest: size for _name, digest, size in files
               if not os.path.isfile(os.path.join(blobs, digest_hex(digest)))}
    dirs = {"/".join(name.split("/")[:i]) for name, _d, _s in files for i in range(1, name.count("/") + 1)}
    size = sum(map(blocks, missing.values())) + sum(blocks(size) for _n, _d, size in files)
    return size + block * len(dirs), len(missing) + len(files) + len(dirs)


def _copy_checked(cached, path, digest):
    """Copy the cached blob to the new file path, hashing it: False (and nothing left at path)
    when the cache entry is not a regular file holding digest (damaged, or planted)."""
    try:  # O_NONBLOCK: a FIFO planted in the cache must not hang the pull
        src = os.open(cached, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    hasher = hashlib.sha256()
    with os.fdopen(src, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return False
        # A fresh file (O_EXCL, no link followed) in a directory made here: names were checked.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
                out.write(chunk)
    if "sha256:" + hasher.hexdigest() != digest:
        os.unlink(path)
        return False
    return True


def pull(client, repo, files, dest, blobs, retries=3, fetched=None):
    """Fetch files (from checked_layers) into the new directory dest; fetched (a list of one
    int, when given) counts the bytes over the wire, also when the pull fails.

    blobs is a cache named by digest: what an earlier pull (or an interrupted one, partly)
    fetched is not fetched again, but it is hashed again as it is copied out, and fetched anew
    when it does not match. dest must not exist; on any failure it is removed. A failure of the
    disk (full, a name too long for it) is an OCIError that says so.
    """
    fetched = fetched if fetched is not None else [0]
    if os.path.islink(blobs) or (os.path.lexists(blobs) and not os.path.isdir(blobs)):
        os.unlink(blobs)
    os.makedirs(blobs, 0o700, exist_ok=True)
    try:
        for _name, digest, size in files:
            cached = os.path.join(blobs, digest_hex(digest))
            if os.path.islink(cached) or not os.path.isfile(cached):
                remove(cached)  # a stray directory, FIFO or link is no download
                fetched[0] += download_blob(client, repo, digest, cached, size, retries)
        os.mkdir(dest, 0o700)
        for name, digest, size in files:
            path = os.path.join(dest, *name.split("/"))
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            cached = os.path.join(blobs, digest_hex(digest))
            if not _copy_checked(cached, path, digest):
                remove(cached)
                fetched[0] += download_blob(client, repo, digest, cached, size, retries)
                if not _copy_checked(cached, path, digest):
                    raise OCIError(f"{blobs}: the blob {digest} changed in the cache while it was "
                                   "copied; refusing it")
        fsync_tree(dest)
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise OCIError(f"{dest}: cannot write the pulled files: {exc.strerror or exc} "
                       f"({getattr(exc, 'filename', None) or dest})")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return fetched[0]


def remove(path):
    """Remove what is at path, whatever it is (a stray directory too), without following links."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def prune(blobs, keep):
    """Drop cached blobs (and partial downloads, and anything else) whose digest is not in keep."""
    keep = {digest_hex(digest) for digest in keep}
    for entry in os.listdir(blobs) if os.path.isdir(blobs) and not os.path.islink(blobs) else ():
        if entry.split(".")[0] not in keep:
            remove(os.path.join(blobs, entry))


def recover(dest):
    """After a crash between swap_in's two renames, put the old directory back."""
    if not os.path.lexists(dest) and os.path.isdir(dest + ".old"):
        os.rename(dest + ".old", dest)


def swap_in(new, dest):
    """Put the complete directory new at dest, the old one (if any) removed after (recover
    undoes a crash in between)."""
    old = dest + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(dest):
        os.rename(dest, old)
    os.rename(new, dest)
    fsync_dir(os.path.dirname(dest) or ".")
    shutil.rmtree(old, ignore_errors=True)
