# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what mirror_seed pushes, images from an OCI image layout into a registry.

Decided here: which images a registry already has (same tag, same digest: nothing is sent),
which blobs it lacks, the order of pushes (blobs, then platform manifests, then the tag, then
the image's signatures), and that an incomplete index or a delta bundle cannot seed a mirror.
The referrers tag schema's indexes (<repo>:sha256-<hex>) are not images: the signatures they
list are pushed with the image they sign.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.edgeml.fleet.plugins.module_utils._layout import LayoutClient
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    INDEX_TYPES, REF_NAME, NotFound, OCIError, parse_manifest, parse_ref)
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import copy_signatures

FALLBACK_TAG_RE = re.compile(r":sha256-[0-9a-f]{64}\Z")


def seed_signatures(layout, client, name, check_mode):
    """Push the signatures the layout has for image name that the registry lacks; returns how
    many (would be) pushed."""
    repo, tag, _digest = parse_ref(name)
    body, media_type, digest = layout.get_manifest(repo, tag)
    subject = {"mediaType": media_type, "digest": digest, "size": len(body)}
    try:
        return copy_signatures(layout, client, repo, subject, apply=not check_mode)[1]
    except EdgemlError as exc:
        raise OCIError(f"cannot copy the signatures of {name} ({digest}) from {layout.name} to "
                       f"{client.name}: {exc.msg}. Check the bundle (bundle_verify), or seed "
                       "without them (signatures: false) if the hosts do not require signatures")


def seed_image(layout, client, name, check_mode):
    """Push one image; returns the blob bytes sent, or None when the registry already has it."""
    repo, tag, _digest = parse_ref(name)
    body, media_type, digest = layout.get_manifest(repo, tag)
    try:
        if client.get_manifest(repo, tag)[2] == digest:
            return None
    except NotFound:
        pass
    if check_mode:
        return 0
    where = f"{layout.name} {name}"
    doc, media_type = parse_manifest(body, media_type, where)
    children = []
    if media_type in INDEX_TYPES:
        for entry in doc.get("manifests") or []:
            if not os.path.exists(layout._blob_path(entry["digest"])):  # pylint: disable=protected-access
                platform = entry.get("platform") or {}
                raise OCIError(f"{where}: the layout lacks the {platform.get('os', '?')}/"
                               f"{platform.get('architecture', '?')} image of this index, and a "
                               "registry refuses an incomplete index. Build the bundle with "
                               "every platform (offline_bundle_platforms: [all]) to seed a mirror")
            child_body, child_type, child = layout.get_manifest(repo, entry["digest"])
            children.append((child, child_body, child_type,
                             parse_manifest(child_body, child_type, where)[0]))
    else:
        children.append((None, body, media_type, doc))
    sent = 0
    for _child, _body, _type, manifest in children:
        for blob in [manifest["config"]] + (manifest.get("layers") or []):
            if client.blob_exists(repo, blob["digest"]):
                continue
            path = layout._blob_path(blob["digest"])  # pylint: disable=protected-access
            if not os.path.exists(path):
                raise OCIError(f"{where}: blob {blob['digest']} is not in the layout (a delta "
                               "bundle cannot seed a mirror that lacks it)")
            sent += client.push_blob(repo, blob["digest"], path, blob["size"])
    for child, child_body, child_type, _manifest in children:
        if child:
            client.put_manifest(repo, child, child_body, child_type)
    client.put_manifest(repo, tag, body, media_type)
    return sent


def run(module):
    """mirror_seed's whole run: read the layout's names, push what the registry lacks, exit or fail."""
    params = module.params
    result = {"changed": False, "pushed": [], "unchanged": [], "pushed_bytes": 0,
              "signatures_pushed": 0}
    layout = LayoutClient(params["layout"])
    try:
        with open(os.path.join(params["layout"], "index.json"), encoding="utf-8") as handle:
            entries = json.load(handle).get("manifests") or []
    except (OSError, ValueError, AttributeError) as exc:
        module.fail_json(msg=f"{params['layout']} is not a readable OCI image layout: {exc}")
    names = [(e.get("annotations") or {}).get(REF_NAME) for e in entries]
    names = [n for n in names if n and ":" in n and not FALLBACK_TAG_RE.search(n)]
    missing = sorted(set(params["images"]) - set(names))
    if missing:
        module.fail_json(msg=f"{params['layout']} has no image named {', '.join(missing)}; it has "
                             f"{', '.join(names) or 'none'}")
    try:
        client = module.clients()[0]
        for name in params["images"] or names:
            sent = seed_image(layout, client, name, module.check_mode)
            if sent is None:
                result["unchanged"].append(name)
            else:
                result["pushed"].append(name)
                result["pushed_bytes"] += sent
            if params["signatures"]:
                result["signatures_pushed"] += seed_signatures(layout, client, name,
                                                               module.check_mode)
    except OCIError as exc:
        module.fail_from(exc, **result)
    result["changed"] = bool(result["pushed"]) or bool(result["signatures_pushed"])
    module.exit_json(**result)
