#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mirror_seed
short_description: Fill a registry (a disconnected site's mirror) from an OCI image layout
version_added: 0.1.0
description:
  - Pushes every image named in the C(index.json) of an OCI image layout - the C(images/)
    directory of an offline bundle - to a registry, under the same repository and tag
    (C(org.opencontainers.image.ref.name) V(REPOSITORY:TAG)). Manifests are pushed byte for byte,
    so digests stay what the fleet pinned.
  - Blobs the registry already has are not sent again; an image the registry already serves
    under its tag with the same digest is left alone.
  - Used by C(edgeml.fleet.bootstrap_offline) for a mirror in C(seeded) mode (role
    P(edgeml.fleet.registry_mirror#role)); the site's hosts then pull from the mirror as usual.
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
attributes:
  check_mode:
    support: full
    description: Reports which images would be pushed.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  idempotent:
    support: full
    description: A second run pushes nothing.
options:
  layout:
    description: The OCI image layout directory.
    type: path
    required: true
  registry:
    description: The registry to fill, V(https://HOST[:PORT]).
    type: str
    required: true
  images:
    description: Push only these V(REPOSITORY:TAG) names (default all in the layout).
    type: list
    elements: str
    default: []
seealso:
  - module: edgeml.fleet.model_export
  - module: edgeml.fleet.bundle_verify
"""

EXAMPLES = r"""
- name: Seed the site mirror from the bundle
  edgeml.fleet.mirror_seed:
    layout: /media/usb/aurora/images
    registry: https://aurora-gw:5000
    username: edgeml
    password: "{{ mirror_password }}"
"""

RETURN = r"""
pushed:
  description: Images pushed (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: ["models/fraud-detector:1.0"]
unchanged:
  description: Images the registry already served with the same digest.
  returned: success
  type: list
  elements: str
pushed_bytes:
  description: Blob bytes uploaded.
  returned: success
  type: int
"""

import json
import os

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._layout import LayoutClient
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    INDEX_TYPES, REF_NAME, NotFound, OCIError, parse_manifest, parse_ref)


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
                               "every platform (edgeml_bundle_platforms: [all]) to seed a mirror")
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


def main():
    module = RegistryModule(
        argument_spec={
            "layout": {"type": "path", "required": True},
            "registry": {"type": "str", "required": True},
            "images": {"type": "list", "elements": "str", "default": []},
        },
        endpoints=False,
        supports_check_mode=True,
    )
    params = module.params
    result = {"changed": False, "pushed": [], "unchanged": [], "pushed_bytes": 0}
    layout = LayoutClient(params["layout"])
    try:
        with open(os.path.join(params["layout"], "index.json"), encoding="utf-8") as handle:
            entries = json.load(handle).get("manifests") or []
    except (OSError, ValueError, AttributeError) as exc:
        module.fail_json(msg=f"{params['layout']} is not a readable OCI image layout: {exc}")
    names = [(e.get("annotations") or {}).get(REF_NAME) for e in entries]
    names = [n for n in names if n and ":" in n]
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
    except OCIError as exc:
        module.fail_from(exc, **result)
    result["changed"] = bool(result["pushed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
