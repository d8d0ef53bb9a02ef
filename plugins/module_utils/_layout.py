# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: an OCI image layout directory (an offline bundle's images/) read
like a registry."""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import digest_hex
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import OCI_MANIFEST, REF_NAME, NotFound, Unreachable


class LayoutClient:
    """An OCI image layout directory (as in an offline bundle), read like a registry.

    Images are found by the org.opencontainers.image.ref.name annotation of index.json, which
    may be 'repo:tag' or just 'tag', or by digest.
    """

    def __init__(self, path):
        self.path = path
        self.name = f"oci-layout:{path}"

    def _index(self):
        try:
            with open(os.path.join(self.path, "oci-layout"), encoding="utf-8") as handle:
                json.load(handle)
            with open(os.path.join(self.path, "index.json"), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            raise Unreachable(f"{self.name} is not a readable OCI image layout: {exc}", self.name)

    def _blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest_hex(digest))

    def get_manifest(self, repo, reference):
        if not reference.startswith("sha256:"):
            names = (f"{repo}:{reference}", reference)
            found = [m for m in self._index().get("manifests", [])
                     if (m.get("annotations") or {}).get(REF_NAME) in names]
            if not found:
                raise NotFound(f"{self.name} has no image named {repo}:{reference}", self.name)
            reference, media_type = found[0]["digest"], found[0].get("mediaType", "")
        else:
            media_type = ""
        try:
            with open(self._blob_path(reference), "rb") as handle:
                body = handle.read()
        except OSError:
            raise NotFound(f"{self.name} has no manifest {reference}", self.name)
        if not media_type:
            media_type = json.loads(body).get("mediaType", OCI_MANIFEST)
        return body, media_type, "sha256:" + hashlib.sha256(body).hexdigest()

    def open_blob(self, repo, digest, offset=0):
        try:
            handle = open(self._blob_path(digest), "rb")  # pylint: disable=consider-using-with
        except OSError:
            raise NotFound(f"{self.name} has no blob {digest}", self.name)
        handle.seek(offset)
        return handle, 206 if offset else 200
