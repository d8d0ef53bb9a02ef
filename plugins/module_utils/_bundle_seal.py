# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what bundle_seal writes, the manifest, checksums, signature and chunks.

Decided here: when a sealed bundle is unchanged (same manifest, so the same creation time and
no new signature), when it is signed again or a stale signature removed, and when the chunk set
is cut again. The bundle format and its checks are in _bundle.py.
"""

from __future__ import annotations

import json
import os
import time

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


def run(module):
    """bundle_seal's whole run: check the chunk size first, seal, exit or fail."""
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
