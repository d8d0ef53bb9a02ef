# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import posixpath
import re

DOCUMENTATION = r"""
name: capture_manifest
short_description: List the data capture files the monitor playbook fetched, as a dataset manifest
version_added: 0.1.0
description:
  - Takes the host variables of the hosts the monitor playbook targeted, each with the results of
    its capture files' fetch (C(__edgeml_capture_fetched), looped over C(edgeml.fleet.capture_files)),
    and returns one entry per file that arrived - site, host, model, version, the file's path in
    the fetched dataset, bytes, sha256 and time.
  - A file whose path does not end in C(<model>/<64 hex>/<name>.jsonl) is left out (the server
    writes no other).
options:
  _input:
    description: Host variables of every targeted host.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Write the dataset's manifest
  ansible.builtin.copy:
    content: "{{ {'files': groups['sites'] | map('extract', hostvars) | edgeml.fleet.capture_manifest} | to_nice_json }}"
    dest: edgeml-capture/manifest.json
    mode: "0600"
"""

RETURN = r"""
_value:
  description: One entry per file, C({site, host, model, version, file, bytes, sha256, modified}).
  type: list
  elements: dict
"""

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")
HEX = re.compile(r"[0-9a-f]{64}\Z")
FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}[.]jsonl\Z")


def split_capture_path(path):
    """(model, version hex, file name) of a capture file's path, or None when it is not one."""
    version_dir = posixpath.dirname(path)
    model, version = posixpath.basename(posixpath.dirname(version_dir)), posixpath.basename(version_dir)
    name = posixpath.basename(path)
    if NAME.match(model) and HEX.match(version) and FILE.match(name):
        return model, version, name
    return None


def capture_manifest(hostvars_list):
    entries = []
    for hostvars in hostvars_list:
        host = str(hostvars.get("inventory_hostname", "?"))
        site = str(hostvars.get("edgeml_site", "-"))
        fetched = hostvars.get("__edgeml_capture_fetched") or {}
        results = fetched.get("results") if isinstance(fetched, dict) else None
        for result in results if isinstance(results, list) else []:
            item = result.get("item") if isinstance(result, dict) else None
            # only files that arrived: not skipped, not failed, written somewhere
            if not isinstance(item, dict) or result.get("failed") or result.get("skipped") or "dest" not in result:
                continue
            parts = split_capture_path(str(item.get("path", "")))
            if not parts:
                continue
            model, version, name = parts
            entries.append({"site": site, "host": host, "model": model, "version": f"sha256:{version}",
                            "file": f"{site}/{model}/{version}/{host}/{name}",
                            "bytes": item.get("bytes"), "sha256": item.get("sha256"),
                            "modified": item.get("modified")})
    return sorted(entries, key=lambda e: (e["site"], e["model"], e["version"], e["host"], e["file"]))


class FilterModule:
    def filters(self):
        return {"capture_manifest": capture_manifest}
