# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the one rule for digests and descriptors.

A digest is exactly ``sha256:`` and 64 lower-case hex characters; no other algorithm or shape
is accepted, because digests become file names (store blobs, OCI layout blobs, partial files,
version directories). The rule is enforced where content enters (every descriptor of every
manifest and index: config, layers, manifests, subject) and asserted again by digest_hex()
wherever a digest becomes a path.
"""

from __future__ import annotations

import hashlib
import re

from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError

DIGEST_RE = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
MAX_MANIFEST_BYTES = 4 << 20  # manifests and indexes are read whole: cap them
MAX_BLOB_BYTES = 1 << 50
READ_SIZE = 1 << 20  # a declared size above this is nonsense from a hostile source


class BadDigest(EdgemlError):
    """A digest or descriptor from a registry, layout, bundle or user breaks the rule."""


def is_digest(value):
    return isinstance(value, str) and DIGEST_RE.match(value) is not None


def check_digest(value, where="digest"):
    """value if it is a sha256 digest, else BadDigest naming where it came from."""
    if not is_digest(value):
        shown = value if isinstance(value, str) and len(value) < 200 else f"{str(value)[:80]}…"
        raise BadDigest(f"{where}: {shown!r} is not a sha256 digest (sha256: and 64 lower-case "
                        "hex characters); refusing it")
    return value


def digest_hex(digest):
    """The hex part of a digest that is about to become a file name (asserts the rule)."""
    return check_digest(digest, "digest used as a file name")[len("sha256:"):]


def check_descriptor(descriptor, where):
    """A descriptor dict with a valid digest, a size (the OCI spec requires one: the disk check
    and the download cap rest on it), annotations that map strings to strings and a platform
    whose os, architecture and variant are strings; returns it."""
    if not isinstance(descriptor, dict):
        raise BadDigest(f"{where}: descriptor is not an object")
    check_digest(descriptor.get("digest"), f"{where} digest")
    named = f"{where} ({descriptor['digest'][:19]}…)"
    size = descriptor.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_BLOB_BYTES:
        raise BadDigest(f"{named}: size {size!r} is not a byte count")
    annotations = descriptor.get("annotations")
    if annotations is not None and not (isinstance(annotations, dict) and all(
            isinstance(value, str) for value in annotations.values())):
        raise BadDigest(f"{named}: annotations are not a map of strings")
    platform = descriptor.get("platform", {})
    if not isinstance(platform, dict) or not all(
            isinstance(platform.get(key, ""), str) for key in ("os", "architecture", "variant")):
        raise BadDigest(f"{named}: platform is not an object with string os, architecture and "
                        "variant")
    return descriptor


def check_manifest_descriptors(doc, where):
    """Check every descriptor of a manifest or index: config, layers, manifests, subject."""
    if not isinstance(doc, dict):
        raise BadDigest(f"{where}: the manifest is not a JSON object")
    for key in ("config", "subject"):
        if doc.get(key) is not None:
            check_descriptor(doc[key], f"{where}: {key}")
    for key in ("layers", "manifests", "blobs"):
        entries = doc.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise BadDigest(f"{where}: {key} is not a list")
        for index, entry in enumerate(entries):
            check_descriptor(entry, f"{where}: {key}[{index}]")
    return doc


def sha256_file(path, hasher=None):
    """Feed a file to a sha256 hasher (a new one unless given); returns the hasher."""
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(READ_SIZE), b""):
            hasher.update(chunk)
    return hasher


def file_digest(path):
    """'sha256:<hex>' of a file."""
    return "sha256:" + sha256_file(path).hexdigest()
