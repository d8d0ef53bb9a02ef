#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_export
short_description: Copy model images from a registry into an OCI image layout (offline bundle)
version_added: 0.1.0
description:
  - Writes the model images named in O(models) into the OCI image layout at O(dest), the
    C(images/) directory of an offline bundle. Manifests are kept byte for byte, so a host that
    syncs from the layout (V(oci-layout:DIR) endpoint of M(edgeml.fleet.model_sync)) gets the
    same digests it would get from the registry.
  - Blobs are shared between images and stored once. Each image is named in C(index.json) by
    the C(org.opencontainers.image.ref.name) annotation V(REPOSITORY:TAG), so
    C(skopeo inspect oci:DIR:REPOSITORY:TAG) and C(oras) read it too.
  - For an image index only the manifests of O(platforms) are copied.
  - O(exclude_blobs) makes a B(delta) layout, without the blobs a site already has.
  - The layout holds exactly the images of O(models); blobs of images dropped since an earlier
    run are removed. Blobs already in the layout with the right size are not fetched again.
  - "Run on the controller (C(delegate_to: localhost)); playbook C(edgeml.fleet.build_bundle)
    uses it."
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
attributes:
  check_mode:
    support: full
    description: Reports what would be copied and changes nothing.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  idempotent:
    support: full
    description: A second run with the same models fetches and changes nothing.
options:
  registry:
    description: Registry to copy from, V(https://HOST[:PORT]) as the controller reaches it.
    type: str
    required: true
  models:
    description:
      - The models, as in C(edgeml_models) - each a dict with C(name), C(ref)
        (V(REPOSITORY:TAG) or V(REPOSITORY@DIGEST)) and optionally C(digest), the manifest
        digest the tag was resolved to, which the copy must match. Other keys are ignored.
    type: list
    elements: dict
    required: true
  dest:
    description: The OCI image layout directory (created when missing).
    type: path
    required: true
  platforms:
    description:
      - Architectures (V(x86_64), V(aarch64)) whose manifests are copied from an image index;
        V(all) copies every platform (needed to seed a registry, which refuses an incomplete
        index).
    type: list
    elements: str
    default: [x86_64]
  prune:
    description:
      - Make the layout hold exactly the images of O(models), removing others and their blobs.
        With V(false), images already in the layout are kept (to add models one at a time, for
        progress, then prune once with all of them).
    type: bool
    default: true
  exclude_blobs:
    description:
      - Blob digests to leave out (a delta bundle for a site that has them). Manifests and
        configs are always included.
    type: list
    elements: str
    default: []
  signatures:
    description:
      - Copy each image's signatures (Sigstore bundles attached as OCI referrers) into the
        layout with it - the referrer manifests, their blobs, and the referrers tag schema's
        index named V(REPOSITORY:sha256-HEX) in C(index.json) - so M(edgeml.fleet.model_sync)
        from the V(oci-layout:DIR) endpoint and M(edgeml.fleet.mirror_seed) find them.
      - A signature that cannot be read from the registry (corrupt, or not hashing to its
        digest) fails the run; V(false) exports without signatures.
    type: bool
    default: true
seealso:
  - module: edgeml.fleet.bundle_seal
  - module: edgeml.fleet.bundle_verify
  - module: edgeml.fleet.model_sync
"""

EXAMPLES = r"""
- name: Copy the fleet's models into the bundle
  delegate_to: localhost
  edgeml.fleet.model_export:
    registry: https://registry.example.com
    username: "{{ edgeml_registry_username }}"
    password: "{{ edgeml_registry_password }}"
    models: "{{ edgeml_models }}"
    dest: /srv/bundles/ship-2026-11/images
    platforms: [x86_64, aarch64]
"""

RETURN = r"""
images:
  description:
    - One entry per model image copied; C(signatures) is how many signatures were copied with
      it (only with O(signatures=true)).
  returned: success
  type: list
  elements: dict
  sample:
    - name: fraud-detector
      ref: models/fraud-detector:1.0
      digest: sha256:458cf12a0d2f46f58ace88450fc928105fe5db4d0198a288c452169c788849b8
      size: 36128
      blobs: 3
      signatures: 1
omitted:
  description: Digests deliberately not in the layout (excluded blobs, other platforms' manifests).
  returned: success
  type: list
  elements: str
bytes_fetched:
  description: Bytes downloaded from the registry in this run.
  returned: success
  type: int
bytes_reused:
  description: Bytes already in the layout.
  returned: success
  type: int
"""

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._export import run


def main():
    module = RegistryModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "models": {"type": "list", "elements": "dict", "required": True},
            "dest": {"type": "path", "required": True},
            "platforms": {"type": "list", "elements": "str", "default": ["x86_64"]},
            "exclude_blobs": {"type": "list", "elements": "str", "default": []},
            "prune": {"type": "bool", "default": True},
            "signatures": {"type": "bool", "default": True},
        },
        endpoints=False,
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
