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
  - The images' signatures go with them (O(signatures)).
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
  signatures:
    description:
      - Push each image's signatures (Sigstore bundles attached as OCI referrers, as
        M(edgeml.fleet.model_export) writes them into the layout) to the registry too, as
        referrers with the C(sha256-HEX) tag schema; those the registry already lists are not
        pushed again.
      - A signature in the layout that cannot be read (corrupt, not hashing to its digest)
        fails the run; V(false) seeds without signatures.
    type: bool
    default: true
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
signatures_pushed:
  description: Signatures the registry lacked and that were pushed (would be, in check mode).
  returned: success
  type: int
  sample: 1
"""

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._seed import run


def main():
    module = RegistryModule(
        argument_spec={
            "layout": {"type": "path", "required": True},
            "registry": {"type": "str", "required": True},
            "images": {"type": "list", "elements": "str", "default": []},
            "signatures": {"type": "bool", "default": True},
        },
        endpoints=False,
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
