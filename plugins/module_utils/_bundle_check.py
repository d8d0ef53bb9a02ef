# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what bundle_verify checks, a bundle directory or a chunk set.

Decided here: the order of the checks (signature, then every file's checksum, then the OCI
layout), that the trusted signers never come from the bundle, and that a chunk set's list is
verified on a private copy before the chunks are joined. The bundle format is in _bundle.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile

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


def run(module):
    """bundle_verify's whole run: refuse signers inside the bundle, verify, exit or fail."""
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
