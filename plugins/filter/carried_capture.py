# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import posixpath

from ansible_collections.edgeml.fleet.plugins.filter.capture_manifest import split_capture_path
from ansible_collections.edgeml.fleet.plugins.filter.drift_report import _number

DOCUMENTATION = r"""
name: carried_capture
short_description: The data capture files carried home from disconnected sites that may go into the dataset
version_added: 0.1.0
description:
  - Takes the C(files) of an C(ansible.builtin.find) (regular files only, links not followed) of
    C(<results>/capture), where the offline bootstrap put each host's capture files, and the
    result reports C(edgeml.fleet.carried_reports) took in.
  - The medium came from a site and is trusted for nothing - a file is taken only when its path is
    C(<host>/<model>/<version hex>/<name>.jsonl) for a host with a result report that lists that
    file with the same sha256. C(warnings) says which others were left out, and which listed
    files did not arrive (the first 20, then how many more).
  - Give it the reports of disconnected hosts only; a host measured live has its capture fetched.
options:
  _input:
    description: The C(files) of an C(ansible.builtin.find) of C(root), with sha256 checksums.
    type: list
    elements: dict
    required: true
  reports:
    description: The result reports taken in (C(reports) of C(edgeml.fleet.carried_reports)).
    type: list
    elements: dict
    required: true
  root:
    description: The directory searched, C(<results>/capture).
    type: path
    required: true
  copied:
    description:
      - The C(results) of an C(ansible.builtin.stat) (sha256) of each file's copy in the dataset,
        looped over the C(files) this filter returned. Given, only the files whose copy is a
        regular file with the sha256 the report lists are returned (the medium could have
        changed between the find and the copy).
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Take in the capture carried home
  ansible.builtin.set_fact:
    carried_capture: "{{ found.files | edgeml.fleet.carried_capture(reports=carried.reports, root=results ~ '/capture') }}"
"""

RETURN = r"""
_value:
  description:
    - C({files, warnings}). Each file has C(src) (its path on the controller), C(file) (its path
      in the dataset, C(<site>/<model>/<version hex>/<host>/<name>)), site, host, model, version,
      bytes, sha256, modified, C(reported_at) (the report's date) and C(source).
  type: dict
"""


MAX_ENTRIES = 10000  # capture entries taken from one report (a full capture directory is hundreds)
MAX_WARNINGS = 20  # warnings said one by one; the rest are counted


def carried_capture(found, reports, root, copied=None):
    root = posixpath.normpath(str(root))
    listed = {}
    for report in reports or []:
        entries = report.get("capture") if isinstance(report.get("capture"), list) else []
        for entry in entries[:MAX_ENTRIES]:
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                listed[(report["host"], entry["file"])] = (report, entry)
    files, warnings, seen = [], [], set()
    for item in found or []:
        path = posixpath.normpath(str(item.get("path", ""))) if isinstance(item, dict) else ""
        rel = posixpath.relpath(path, root) if path.startswith(root + "/") else None
        host, _sep, inner = (rel or "").partition("/")
        parts = split_capture_path(inner) if rel and inner.count("/") == 2 else None
        report, entry = listed.get((host, inner), (None, None))
        if not parts or report is None:
            warnings.append(f"capture/{str(rel or path)[:200]}: no result report lists it; left out")
            continue
        seen.add((host, inner))
        if not isinstance(entry.get("sha256"), str) or entry["sha256"] != item.get("checksum"):
            warnings.append(f"capture/{rel}: its sha256 is not the one its result report gives; left out")
            continue
        model, version, name = parts
        site = str(report.get("site", "-"))
        files.append({"src": path, "file": f"{site}/{model}/{version}/{host}/{name}",
                      "site": site, "host": host, "model": model, "version": f"sha256:{version}",
                      "bytes": item.get("size") if isinstance(item.get("size"), int) else None, "sha256": item.get("checksum"),
                      "modified": _number(entry.get("modified")),
                      "reported_at": str(report.get("reported_at", "-"))[:40], "source": "result report"})
    for (host, inner) in sorted(set(listed) - seen):
        warnings.append(f"capture/{host}/{inner[:200]}: listed in its result report, not carried home")
    if copied is not None:  # what arrived in the dataset must still be what the report lists
        arrived = {r["item"]["file"]: r["stat"] for r in copied
                   if isinstance(r, dict) and isinstance(r.get("item"), dict) and isinstance(r.get("stat"), dict)}
        for entry in list(files):
            stat = arrived.get(entry["file"]) or {}
            if not (stat.get("isreg") and not stat.get("islnk") and stat.get("checksum") == entry["sha256"]):
                files.remove(entry)
                warnings.append(f"{entry['file']}: the copy is not what its result report lists; removed")
    if len(warnings) > MAX_WARNINGS:
        warnings = warnings[:MAX_WARNINGS] + [f"... and {len(warnings) - MAX_WARNINGS} more"]
    return {"files": sorted(files, key=lambda e: e["file"]), "warnings": warnings}


class FilterModule:
    def filters(self):
        return {"carried_capture": carried_capture}
