# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.edgeml.fleet.plugins.filter.capture_manifest import split_capture_path

DOCUMENTATION = r"""
name: capture_files
short_description: The data capture files found on a host, as an offline result report lists them
version_added: 0.1.0
description:
  - Takes the C(files) of an C(ansible.builtin.find) of a host's capture directory and returns
    one entry per capture file - C(path) on the host, C(file) (C(<model>/<version hex>/<name>.jsonl),
    its path under the host's directory in the carried capture), model, version, bytes, sha256
    and time.
  - A file whose path does not end in C(<model>/<64 hex>/<name>.jsonl) is left out (the server
    writes no other).
options:
  _input:
    description: The C(files) of an C(ansible.builtin.find) result, with sha256 checksums.
    type: list
    elements: dict
    required: true
  max_bytes:
    description: At most this many bytes in all, the newest files first (none - all of them).
    type: int
"""

EXAMPLES = r"""
- name: List the host's capture files for its result report
  ansible.builtin.set_fact:
    capture: "{{ found.files | edgeml.fleet.capture_files }}"
"""

RETURN = r"""
_value:
  description: One entry per file, C({path, file, model, version, bytes, sha256, modified}), sorted by C(file).
  type: list
  elements: dict
"""


def capture_files(found, max_bytes=None):
    entries = []
    for item in found or []:
        path = str(item.get("path", "")) if isinstance(item, dict) else ""
        parts = split_capture_path(path)
        if parts:
            model, version, name = parts
            entries.append({"path": path, "file": f"{model}/{version}/{name}", "model": model,
                            "version": f"sha256:{version}", "bytes": item.get("size"),
                            "sha256": item.get("checksum"), "modified": item.get("mtime")})
    if max_bytes is not None:  # the newest first, up to the cap
        kept, total = [], 0
        cap = int(max_bytes)
        for entry in sorted(entries, key=lambda e: -e["modified"] if isinstance(e["modified"], (int, float)) else 0):
            size = entry["bytes"] if isinstance(entry["bytes"], int) and entry["bytes"] >= 0 else cap + 1
            if total + size <= cap:
                kept.append(entry)
                total += size
        entries = kept
    return sorted(entries, key=lambda e: e["file"])


class FilterModule:
    def filters(self):
        return {"capture_files": capture_files}
