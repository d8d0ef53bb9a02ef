#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_verify
short_description: Verify an offline bundle (signature, checksums, OCI layout) before use
version_added: 0.1.0
description:
  - Checks an offline bundle made by C(edgeml.fleet.build_bundle) before anything is installed
    from it, in this order - the signature of C(SHA256SUMS) against an allowed-signers file
    (C(ssh-keygen -Y verify), namespace C(edgeml-bundle)); every file against C(SHA256SUMS), with
    no file missing or added; C(manifest.json); and the integrity of the OCI image layout in
    C(images/) (every image's manifests and blobs present with the sizes its manifests give;
    blobs a delta bundle leaves out on purpose are listed in the manifest).
  - A tampered, truncated or unsigned bundle is refused with a message naming the bad file.
  - O(path) may also be a chunk set (a directory with C(CHUNKS.SHA256), its signature
    C(CHUNKS.SHA256.sig) and C(bundle.tar.NNN)). The signature of the chunk list is checked
    first, then each chunk as it is read; the bundle is reassembled (regular files and
    directories only, no more bytes than the chunks hold) next to O(dest), verified as above,
    and only then replaces O(dest). A failed join leaves O(dest) as it was; an unsigned chunk set
    (with O(require_signature=false)) never replaces an existing O(dest).
author: edgeml.fleet developers (@edgeml)
attributes:
  check_mode:
    support: full
    description: Verifies; a chunk set is checked but not reassembled.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  idempotent:
    support: full
    description: Changes something only when it reassembles a chunk set, once.
options:
  path:
    description: The bundle directory, or a directory of chunks.
    type: path
    required: true
  dest:
    description: Where a chunk set is reassembled. Default V(bundle) inside O(path).
    type: path
  allowed_signers:
    description:
      - The OpenSSH allowed-signers file naming who may sign bundles (C(ssh-keygen(1)), ALLOWED
        SIGNERS). Take it from your fleet's operators, not from the bundle; a file inside O(path)
        is refused.
    type: path
    default: /etc/edgeml/bundle-signers
  require_signature:
    description: Refuse an unsigned bundle. Turn off only for a bundle you built yourself.
    type: bool
    default: true
requirements:
  - ssh-keygen (OpenSSH 8.1 or later) to check signatures
seealso:
  - module: edgeml.fleet.bundle_seal
"""

EXAMPLES = r"""
- name: Verify the bundle the technician brought
  edgeml.fleet.bundle_verify:
    path: /media/usb/edgeml-bundle
  register: bundle

- name: Reassemble and verify a bundle carried on three sticks
  edgeml.fleet.bundle_verify:
    path: /srv/incoming/chunks
    dest: /srv/incoming/bundle
"""

RETURN = r"""
bundle_path:
  description: The verified bundle directory (O(dest) for a chunk set).
  returned: success
  type: str
manifest:
  description: The bundle's C(manifest.json).
  returned: success
  type: dict
images:
  description: Image names in the OCI layout with their manifest digests.
  returned: success
  type: dict
  sample: {"models/fraud-detector:1.0": "sha256:458c…"}
signer:
  description: The principal whose key signed the bundle (null when unsigned and allowed).
  returned: success
  type: str
files:
  description: Files checked.
  returned: success
  type: int
bytes:
  description: Bytes checked.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeml.fleet.plugins.module_utils._bundle_check import run


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "dest": {"type": "path"},
            "allowed_signers": {"type": "path", "default": "/etc/edgeml/bundle-signers"},
            "require_signature": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
