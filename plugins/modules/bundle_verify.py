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

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle
from ansible_collections.edgeml.fleet.plugins.module_utils._bundle import BundleError


def verify(module, root, result):
    params = module.params
    if not os.path.isdir(root):
        raise BundleError(f"{root}: no bundle there (not a directory)")
    if params["require_signature"] or os.path.isfile(os.path.join(root, _bundle.SIGNATURE)):
        result["signer"] = _bundle.verify_signature(module.run_command, root,
                                                    params["allowed_signers"])
    result["files"], result["bytes"] = _bundle.check_sums(root)
    manifest = _bundle.read_manifest(root)
    images = os.path.join(root, _bundle.IMAGES)
    if os.path.isdir(images):
        # SHA256SUMS has just vouched for every byte: the layout check reads no blob again.
        hashed = _bundle.blobs_hashed(_bundle.read_sums(os.path.join(root, _bundle.SUMS)))
        result["images"] = _bundle.check_layout(images, manifest.get("omitted") or (), hashed)
    result.update(manifest=manifest, bundle_path=root)


def verify_chunks(module, chunks, result):
    """Check the chunk list's signature on a private copy, then join (or, in check mode, hash)
    the chunks it lists; returns the bundle directory to verify, or None when already done."""
    params = module.params
    dest = (params["dest"] or os.path.join(chunks, "bundle")).rstrip("/")
    with tempfile.TemporaryDirectory() as private:
        for name in (_bundle.CHUNKS, _bundle.CHUNKS + ".sig"):
            if os.path.isfile(os.path.join(chunks, name)):
                shutil.copyfile(os.path.join(chunks, name), os.path.join(private, name))
        listing = os.path.join(private, _bundle.CHUNKS)
        signed = os.path.isfile(listing + ".sig")
        if params["require_signature"] or signed:
            try:
                _bundle.verify_signature(module.run_command, private, params["allowed_signers"],
                                         _bundle.CHUNKS)
            except BundleError as exc:  # name the files as the technician sees them
                raise BundleError(exc.msg.replace(private, chunks)) from None
        if module.check_mode:
            _ids, ident = _bundle.check_chunks(chunks, listing)
            result.update(changed=not _bundle.joined_from(dest, ident), bundle_path=dest)
            return None if result["changed"] else dest
        _ids, ident = _bundle.read_chunk_list(chunks, listing)
        if not signed and os.path.exists(dest) and not _bundle.joined_from(dest, ident):
            raise BundleError(f"{dest}: already holds a bundle; an unsigned chunk set does not "
                              "replace it (move it away first)")
        result["changed"] = _bundle.join(chunks, dest, lambda staging: verify(
            module, staging, result), listing)
    if result["changed"]:
        result["bundle_path"] = dest  # verified as it was joined
        return None
    return dest


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
    params = module.params
    result = {"changed": False, "signer": None, "images": {}}
    try:
        root = params["path"].rstrip("/") or "/"
        signers = os.path.realpath(params["allowed_signers"])
        if signers.startswith(os.path.realpath(root) + os.sep):
            raise BundleError(f"{params['allowed_signers']}: inside the bundle; the trusted "
                              "signers come from the host or the technician, never the bundle")
        if _bundle.is_chunk_set(root):
            root = verify_chunks(module, root, result)
        if root:
            verify(module, root, result)
    except BundleError as exc:
        module.fail_json(msg=f"bundle refused: {exc.msg}", **result)
    except OSError as exc:
        module.fail_json(msg=f"bundle refused: cannot read {exc.filename or params['path']}: "
                             f"{exc.strerror}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
