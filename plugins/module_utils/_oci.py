# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the OCI vocabulary: media types, references, manifests, platforms,
and the errors every registry-facing helper raises.

Where things live: digests (the one rule) in _digest.py; the registry HTTP client and its auth
in _registry.py; OCI image layouts in _layout.py; blob downloads in _transfer.py; layer
extraction in _layer.py; the host store in _store.py. Standard library only: runs on hosts.
"""

from __future__ import annotations

import json
import platform
import re

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import (
    DIGEST_RE, MAX_MANIFEST_BYTES, BadDigest, check_manifest_descriptors)
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"

REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MACHINE_TO_OCI = {"x86_64": ("amd64", None), "amd64": ("amd64", None),
                  "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8")}


class OCIError(EdgemlError):
    """A registry operation failed; the message says what, where and what to do."""

    retry_elsewhere = False  # true where another endpoint might do better

    def __init__(self, msg, endpoint=None, status=None):
        super().__init__(msg)
        self.endpoint, self.status = endpoint, status


class Unreachable(OCIError):
    retry_elsewhere = True


class NotFound(OCIError):
    retry_elsewhere = True  # a mirror may lack what core has


class AuthError(OCIError):
    pass


class DigestMismatch(OCIError):
    retry_elsewhere = True


def parse_ref(ref):
    """'repo:tag', 'repo@sha256:…' or 'repo' (tag latest) -> (repo, tag or None, digest or None)."""
    if not isinstance(ref, str) or not ref:
        raise OCIError(f"model reference {ref!r} is empty; expected REPOSITORY:TAG or REPOSITORY@sha256:DIGEST")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise OCIError(f"'{digest}' is not a sha256 digest (sha256: and 64 hex characters)")
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise OCIError(f"'{tag}' is not a valid tag")
    if not REPO_RE.match(ref):
        raise OCIError(f"'{ref}' is not a repository name (lower-case path like models/fraud-detector; "
                       "give the registry itself in the registries option, not in the reference)")
    if tag is None and digest is None:
        tag = "latest"
    return ref, tag, digest


def host_platform(machine=None):
    machine = machine or platform.machine()
    arch, variant = MACHINE_TO_OCI.get(machine.lower(), (machine.lower(), None))
    return {"os": "linux", "architecture": arch, "variant": variant}


def choose_platform(index, where, want=None):
    """The manifest descriptor of an image index that fits this host's platform."""
    want = want or host_platform()
    entries = index.get("manifests") or []
    if len(entries) == 1 and not entries[0].get("platform"):
        return entries[0]  # an index of one artifact
    fits = [m for m in entries if (m.get("platform") or {}).get("os", "linux") == want["os"]
            and (m.get("platform") or {}).get("architecture") == want["architecture"]]
    if want.get("variant") and len(fits) > 1:
        fits = [m for m in fits if m["platform"].get("variant") in (None, want["variant"])] or fits
    if not fits:
        have = sorted({"/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
                       for p in (m.get("platform") or {} for m in entries)})
        raise OCIError(f"{where} has no image for {want['os']}/{want['architecture']}; "
                       f"it has: {', '.join(have) or 'no platforms'}")
    return fits[0]


def parse_manifest(body, media_type, where):
    """Decode a manifest or index, check its media type and every descriptor's digest."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise OCIError(f"{where}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes; "
                       "refusing it")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise OCIError(f"{where}: the manifest is not JSON")
    if not isinstance(doc, dict):
        raise OCIError(f"{where}: the manifest is not a JSON object")
    media_type = media_type if media_type in MANIFEST_TYPES + INDEX_TYPES else \
        doc.get("mediaType") or media_type
    if media_type not in MANIFEST_TYPES + INDEX_TYPES:
        if doc.get("schemaVersion") == 2 and "layers" in doc and "config" in doc:
            media_type = OCI_MANIFEST  # an OCI manifest served without its mediaType
        else:
            raise OCIError(f"{where}: unsupported manifest media type '{media_type}'; expected "
                           f"one of {', '.join(MANIFEST_TYPES + INDEX_TYPES)}")
    try:
        check_manifest_descriptors(doc, where)
    except BadDigest as exc:
        raise OCIError(exc.msg)
    if media_type in MANIFEST_TYPES and not isinstance(doc.get("config"), dict):
        raise OCIError(f"{where}: the image manifest has no config descriptor")
    return doc, media_type
