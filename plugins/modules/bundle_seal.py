#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_seal
short_description: Seal an offline bundle - manifest, checksums, signature, chunks
version_added: 0.2.0
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

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle
from ansible_collections.edgeml.fleet.plugins.module_utils._bundle import BundleError
from ansible_collections.edgeml.fleet.plugins.module_utils._digest import sha256_file


def manifest_text(info, entries, created):
    manifest = dict(info, format=_bundle.FORMAT, created=created,
                    files=[{"path": rel, "size": size, "sha256": digest}
                           for rel, (digest, size) in sorted(entries.items())])
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n", manifest


def seal(module, result):
    params = module.params
    root = params["path"]
    if not os.path.isdir(root):
        raise BundleError(f"{root} is not a directory: nothing to seal")
    info = params["info"]
    entries = _bundle.hash_files(root, skip=(_bundle.MANIFEST,))
    if os.path.isdir(os.path.join(root, _bundle.IMAGES)):
        hashed = _bundle.blobs_hashed({rel: digest for rel, (digest, _size) in entries.items()})
        _bundle.check_layout(os.path.join(root, _bundle.IMAGES), info.get("omitted") or (), hashed)
    old_created = None
    try:
        with open(os.path.join(root, _bundle.MANIFEST), encoding="utf-8") as handle:
            old_created = json.load(handle).get("created")
    except (OSError, ValueError, AttributeError):
        pass
    text, manifest = manifest_text(info, entries, old_created)
    sums_path = os.path.join(root, _bundle.SUMS)
    unchanged = False
    try:
        with open(os.path.join(root, _bundle.MANIFEST), encoding="utf-8") as handle:
            unchanged = old_created is not None and handle.read() == text
    except OSError:
        pass
    if not unchanged:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text, manifest = manifest_text(info, entries, now)
    result.update(manifest=manifest, files=len(entries) + 1,
                  bytes=sum(size for _digest, size in entries.values()) + len(text))
    sig_path = os.path.join(root, _bundle.SIGNATURE)
    if module.check_mode:
        result["changed"] = not unchanged or not os.path.isfile(sums_path) or (
            bool(params["signing_key"])
            and not _bundle.signed_by(module.run_command, root, params["signing_key"]))
        result["signed"] = bool(params["signing_key"]) or os.path.isfile(sig_path)
        return
    changed = _bundle.write_if_changed(os.path.join(root, _bundle.MANIFEST), text)
    entries[_bundle.MANIFEST] = (sha256_file(os.path.join(root, _bundle.MANIFEST)).hexdigest(),
                                 len(text.encode()))
    changed = _bundle.write_sums(root, entries) or changed
    if params["signing_key"]:
        if changed or not _bundle.signed_by(module.run_command, root, params["signing_key"]):
            _bundle.sign(module.run_command, root, params["signing_key"])
            changed = True
    elif os.path.isfile(sig_path):
        os.unlink(sig_path)  # a stale signature would not match; unsigned is said plainly
        changed = True
    result["signed"] = os.path.isfile(sig_path)
    if params["chunk_size"]:
        chunk_dir = params["chunk_dir"] or root.rstrip("/") + ".chunks"
        size = _bundle.parse_size(params["chunk_size"])
        key = params["signing_key"]
        if changed or not _chunks_match(chunk_dir, size):
            _bundle.split(root, chunk_dir, size)
            changed = True
        # The chunk list is signed like SHA256SUMS: it is checked before anything is unpacked.
        if key and (changed or not _bundle.signed_by(module.run_command, chunk_dir, key,
                                                     _bundle.CHUNKS)):
            _bundle.sign(module.run_command, chunk_dir, key, _bundle.CHUNKS)
            changed = True
        elif not key and os.path.isfile(os.path.join(chunk_dir, _bundle.CHUNKS + ".sig")):
            os.unlink(os.path.join(chunk_dir, _bundle.CHUNKS + ".sig"))
            changed = True
        chunks, _ident = _bundle.read_chunk_list(chunk_dir)
        result["chunks"] = [{"file": name, "sha256": digest,
                             "size": os.path.getsize(os.path.join(chunk_dir, name))}
                            for name, digest in chunks]
        result["chunk_dir"] = chunk_dir
    result["changed"] = changed


def _chunks_match(chunk_dir, size):
    """The chunk set there is complete and cut at this size (contents unchanged since)."""
    try:
        chunks, _ident = _bundle.read_chunk_list(chunk_dir)
    except BundleError:
        return False
    sizes = [os.path.getsize(os.path.join(chunk_dir, name)) for name, _digest in chunks]
    return all(s == size for s in sizes[:-1]) and 0 < sizes[-1] <= size


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
    result = {"changed": False}
    try:
        if module.params["chunk_size"]:
            _bundle.parse_size(module.params["chunk_size"])  # a bad size fails before any work
        seal(module, result)
    except BundleError as exc:
        module.fail_json(msg=exc.msg, **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot seal the bundle at {module.params['path']}: {exc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
