#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_seal
short_description: Seal an offline bundle - manifest, checksums, signature, chunks
version_added: 0.1.0
description:
  - The last step of C(edgeml.fleet.build_bundle). Checks the bundle's OCI image layout, writes
    C(manifest.json) (what is inside, with digests and sizes, and when it was made),
    C(SHA256SUMS) over every file (C(sha256sum -c) reads it) and, with O(signing_key), the
    detached signature C(SHA256SUMS.sig) made by C(ssh-keygen -Y sign -n edgeml-bundle).
  - With O(chunk_size), also writes the bundle as a stream cut into chunks for removable media
    (C(bundle.tar.000), C(bundle.tar.001), ...), each checksummed in C(CHUNKS.SHA256) with a copy
    of the bundle's C(bootstrap.sh) next to them; with O(signing_key) the list is signed into
    C(CHUNKS.SHA256.sig) like C(SHA256SUMS). M(edgeml.fleet.bundle_verify) and C(bootstrap.sh)
    check the signature, then the chunks, and reassemble them.
  - Nothing is rewritten when the contents did not change (the creation time stays).
  - "Run where the bundle is built (C(delegate_to: localhost))."
author: edgeml.fleet developers (@edgeml)
attributes:
  check_mode:
    support: full
    description: Reports whether the seal would change, and writes nothing.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  idempotent:
    support: full
    description: Sealing unchanged contents again changes nothing.
options:
  path:
    description: The bundle directory.
    type: path
    required: true
  info:
    description:
      - What the bundle is for, kept in C(manifest.json) next to the file list; for example
        C(models) (names, refs, digests), C(sites), C(platforms), C(collection), C(delta).
      - C(omitted) (a list of digests) names blobs or manifests left out on purpose.
    type: dict
    default: {}
  signing_key:
    description:
      - SSH private key that signs C(SHA256SUMS). Without it the bundle is unsigned and
        M(edgeml.fleet.bundle_verify) refuses it unless told otherwise.
      - An existing signature is kept only when this key made it over the current
        C(SHA256SUMS); after a key rotation the unchanged bundle is signed again.
    type: path
  chunk_size:
    description: Also write the bundle as chunks of this size (V(700M), V(4G), bytes).
    type: str
  chunk_dir:
    description: Where the chunks go; default the bundle's path with C(.chunks) appended.
    type: path
requirements:
  - ssh-keygen (OpenSSH 8.1 or later) for O(signing_key)
seealso:
  - module: edgeml.fleet.model_export
  - module: edgeml.fleet.bundle_verify
"""

EXAMPLES = r"""
- name: Seal, sign and cut into 700 MiB chunks
  delegate_to: localhost
  edgeml.fleet.bundle_seal:
    path: /srv/bundles/ship-2026-11
    info:
      models: "{{ exported.images }}"
      sites: [ship-aurora]
    signing_key: ~/.ssh/edgeml-bundle
    chunk_size: 700M
"""

RETURN = r"""
manifest:
  description: The contents of C(manifest.json).
  returned: success
  type: dict
files:
  description: Number of files in the bundle.
  returned: success
  type: int
bytes:
  description: Their total size.
  returned: success
  type: int
signed:
  description: Whether the bundle carries a signature.
  returned: success
  type: bool
chunks:
  description: The chunk files with their sizes and checksums, when O(chunk_size) is given.
  returned: success
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeml.fleet.plugins.module_utils._bundle_seal import run


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "info": {"type": "dict", "default": {}},
            "signing_key": {"type": "path", "no_log": False},
            "chunk_size": {"type": "str"},
            "chunk_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
