# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what model_export writes, model images copied into an OCI image layout.

Decided here: which platform images of an index are copied (the others are listed as omitted),
which blobs are fetched or reused, the layout's index.json and oci-layout marker, which
blobs of an earlier run are pruned, and how an image's signatures go with it (its referrer
manifests and their blobs, and the referrers tag schema's index named <repo>:sha256-<hex> in
index.json, which model_sync and mirror_seed read back). Used to build the offline bundle.
"""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import digest_hex
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    INDEX_TYPES, OCI_INDEX, REF_NAME, MACHINE_TO_OCI, NotFound, OCIError, parse_manifest,
    parse_ref)
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import copy_signatures
from ansible_collections.edgeml.fleet.plugins.module_utils._transfer import download_blob


LAYOUT_MARKER = {"imageLayoutVersion": "1.0.0"}


class Layout:
    """The OCI image layout being written."""

    def __init__(self, root, check_mode):
        self.root, self.check_mode = root, check_mode
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.fetched = self.reused = 0
        self.changed = False
        self.keep = set()  # every blob the layout must hold

    def path(self, digest):
        return os.path.join(self.blob_dir, digest_hex(digest))

    def has(self, digest, size=None):
        path = self.path(digest)
        return os.path.isfile(path) and (size is None or os.path.getsize(path) == size)

    def put_bytes(self, digest, body):
        self.keep.add(digest)
        if self.has(digest, len(body)):
            return
        self.changed = True
        if not self.check_mode:
            with open(self.path(digest) + ".tmp", "wb") as handle:
                handle.write(body)
            os.replace(self.path(digest) + ".tmp", self.path(digest))

    def fetch(self, client, repo, descriptor, retries):
        digest, size = descriptor["digest"], descriptor.get("size")
        self.keep.add(digest)
        if self.has(digest, size):
            self.reused += size or 0
            return
        self.changed = True
        if self.check_mode:
            self.fetched += size or 0
            return
        self.fetched += download_blob(client, repo, digest, self.path(digest), size, retries)

    def existing_entries(self):
        try:
            with open(os.path.join(self.root, "index.json"), encoding="utf-8") as handle:
                return json.load(handle).get("manifests") or []
        except (OSError, ValueError, AttributeError):
            return []

    def write_index(self, entries):
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": entries}
        for name, doc in (("oci-layout", LAYOUT_MARKER), ("index.json", index)):
            body = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
            path = os.path.join(self.root, name)
            try:
                with open(path, "rb") as handle:
                    if handle.read() == body:
                        continue
            except OSError:
                pass
            self.changed = True
            if not self.check_mode:
                with open(path + ".tmp", "wb") as handle:
                    handle.write(body)
                os.replace(path + ".tmp", path)

    def prune(self):
        """Remove blobs no image of this layout uses (left from an earlier run)."""
        if not os.path.isdir(self.blob_dir):
            return
        for name in os.listdir(self.blob_dir):
            if "sha256:" + name not in self.keep:
                self.changed = True
                if not self.check_mode:
                    os.unlink(os.path.join(self.blob_dir, name))


class LayoutTarget:
    """The layout being written, as push_signature sees a registry: what is pushed by digest
    becomes a blob; a tag (the referrers tag schema's sha256-<hex>) becomes an index.json entry
    named <repo>:<tag>, made anew in each run."""

    def __init__(self, layout):
        self.layout, self.name, self.tags = layout, f"oci-layout:{layout.root}", {}

    def get_manifest(self, repo, reference):
        if (repo, reference) not in self.tags:
            raise NotFound(f"{self.name} has no {repo}:{reference} yet", self.name)
        body = self.tags[(repo, reference)]
        return body, OCI_INDEX, "sha256:" + hashlib.sha256(body).hexdigest()

    def push_blob(self, _repo, digest, data, size):
        self.layout.put_bytes(digest, data)
        return size

    def put_manifest(self, repo, reference, body, _media_type):
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.layout.put_bytes(digest, body)
        if not reference.startswith("sha256:"):
            self.tags[(repo, reference)] = body
        return digest

    def entries(self):
        return [{"mediaType": OCI_INDEX, "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                 "size": len(body), "annotations": {REF_NAME: f"{repo}:{tag}"}}
                for (repo, tag), body in sorted(self.tags.items())]


def export_signatures(target, client, repo, subject, image):
    """Copy the signatures client has for subject into the layout; their count goes in image."""
    try:
        image["signatures"] = copy_signatures(client, target, repo, subject)[0]
    except EdgemlError as exc:
        raise OCIError(f"cannot copy the signatures of {repo}@{subject['digest']} from "
                       f"{client.name}: {exc.msg}. Fix or remove them there, or export without "
                       "them (signatures: false) if the hosts do not require signatures")


def wanted_architectures(platforms):
    return {MACHINE_TO_OCI.get(p.lower(), (p.lower(), None))[0] for p in platforms}


def export_image(layout, target, client, model, params, omitted):
    """Copy one image (manifest or index and its platform manifests) and its blobs."""
    repo, tag, ref_digest = parse_ref(model["ref"])
    pinned = model.get("digest") or ref_digest
    body, media_type, digest = client.get_manifest(repo, pinned or tag)
    where = f"{client.name} {repo}@{digest}"
    if pinned and digest != pinned:
        raise OCIError(f"{where}: the registry serves {digest}, but {model['name']} is pinned to "
                       f"{pinned}; resolve the tag again")
    doc, media_type = parse_manifest(body, media_type, where)
    layout.put_bytes(digest, body)
    manifests = [doc]
    if media_type in INDEX_TYPES:
        archs = wanted_architectures(params["platforms"])
        manifests = []
        for entry in doc.get("manifests") or []:
            arch = (entry.get("platform") or {}).get("architecture")
            if arch and arch not in archs and "all" not in params["platforms"]:
                omitted.add(entry["digest"])
                continue
            child_body, child_type, child = client.get_manifest(repo, entry["digest"])
            if child != entry["digest"]:
                raise OCIError(f"{where}: manifest {entry['digest']} hashes to {child}")
            child_doc, _child_type = parse_manifest(child_body, child_type, where)
            layout.put_bytes(child, child_body)
            manifests.append(child_doc)
        if not manifests:
            raise OCIError(f"{where} has no image for {', '.join(params['platforms'])}")
    size, blobs = len(body), 0
    for manifest in manifests:
        layout.fetch(client, repo, manifest["config"], params["retries"])
        for layer in manifest.get("layers") or []:
            size += layer.get("size", 0)
            blobs += 1
            if layer["digest"] in params["exclude_blobs"]:
                omitted.add(layer["digest"])
                continue
            layout.fetch(client, repo, layer, params["retries"])
    entry = {"mediaType": media_type, "digest": digest, "size": len(body),
             "annotations": {REF_NAME: f"{repo}:{tag}" if tag else repo,
                             "io.edgeml.model": model["name"]}}
    image = {"name": model["name"], "ref": model["ref"], "digest": digest, "size": size,
             "blobs": blobs}
    if params["signatures"]:
        export_signatures(target, client, repo, {"mediaType": media_type, "digest": digest,
                                                 "size": len(body)}, image)
    return entry, image


def run(module):
    """model_export's whole run: copy every image into the layout, write its index, exit or fail."""
    params = module.params
    layout = Layout(params["dest"], module.check_mode)
    result = {"changed": False, "images": [], "omitted": []}
    omitted = set()
    try:
        if not module.check_mode:
            os.makedirs(layout.blob_dir, exist_ok=True)
        for number, model in enumerate(params["models"], 1):
            if not isinstance(model.get("name"), str) or not isinstance(model.get("ref"), str):
                module.fail_json(msg=f"models[{number}] needs a name and a ref, got {model!r}")
        client = module.clients()[0]
        entries = []
        target = LayoutTarget(layout)
        for model in params["models"]:
            entry, image = export_image(layout, target, client, model, params, omitted)
            entries.append(entry)
            result["images"].append(image)
        entries += target.entries()
        if not params["prune"]:
            names = {e["annotations"][REF_NAME] for e in entries}
            entries += [e for e in layout.existing_entries()
                        if (e.get("annotations") or {}).get(REF_NAME) not in names]
        entries.sort(key=lambda e: (e.get("annotations") or {}).get(REF_NAME, e["digest"]))
        layout.write_index(entries)
        if params["prune"]:
            layout.prune()
    except EdgemlError as exc:
        module.fail_from(exc, **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the layout at {params['dest']}: {exc}", **result)
    result.update(changed=layout.changed, omitted=sorted(omitted), bytes_fetched=layout.fetched,
                  bytes_reused=layout.reused)
    module.exit_json(**result)
