# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os

DOCUMENTATION = r"""
name: carried_reports
short_description: The result reports carried home from disconnected sites that may be taken in
version_added: 0.1.0
description:
  - Takes C([path, text]) pairs of the C(<host>.json) files in a results directory (written by
    the offline bootstrap next to its bundle, carried home by a technician) and returns the
    reports that may describe a host of this run, parsed.
  - A file is a hostile input (it came on a stick from a site) - one that is not JSON, is not
    named after the host it names, names a host the run does not target, gives another site
    than the inventory's for that host, or names a host another file names too is left out;
    C(warnings) on the result says which and why. One bad file never stops the report.
options:
  _input:
    description: C([path, text]) pairs.
    type: list
    elements: list
    required: true
  hosts:
    description: The hosts the run targets.
    type: list
    elements: str
    required: true
  sites:
    description: The inventory's site of each host (C(edgeml_site)), C({host, site}).
    type: dict
    required: true
  needs:
    description: A key a report must have to be taken in (C(models) for the summary, C(drift) for the monitor).
    type: str
    default: models
"""

EXAMPLES = r"""
- name: Take in result reports carried home
  ansible.builtin.set_fact:
    carried: >-
      {{ paths | zip(query('ansible.builtin.file', *paths))
         | edgeml.fleet.carried_reports(hosts=ansible_play_hosts_all, sites=sites, needs='drift') }}
  vars:
    paths: "{{ query('ansible.builtin.fileglob', edgeml_results_dir ~ '/*.json') }}"
"""

RETURN = r"""
_value:
  description: C({reports, warnings}) - the reports taken in, and why each other file was not.
  type: dict
"""

MAX_TEXT = 16 << 20  # a result report is a few KB, a few MB with its statistics


def carried_reports(files, hosts, sites, needs="models"):
    hosts, taken, warnings, named = set(hosts or []), {}, [], {}
    for pair in files or []:
        path, text = (list(pair) + [None, None])[:2]
        name = os.path.basename(str(path))
        try:
            if not isinstance(text, str) or len(text) > MAX_TEXT:
                raise ValueError("not text, or larger than 16 MiB")
            report = json.loads(text)
        except (ValueError, RecursionError) as exc:
            warnings.append(f"{name}: not a result report ({str(exc)[:80]})")
            continue
        host = report.get("host") if isinstance(report, dict) else None
        if name == "summary.json" and isinstance(report, dict) and "host" not in report:
            continue  # the bootstrap's own summary of its run, written next to the reports
        if not isinstance(host, str) or name != f"{host}.json":
            warnings.append(f"{name}: names host {str(host)[:60]!r}, not the one in its file name")
        elif host not in hosts:
            warnings.append(f"{name}: {host} is not a host this run targets")
        elif str(report.get("site")) != str(sites.get(host, "-")):
            warnings.append(f"{name}: says site {str(report.get('site'))[:60]!r}, the inventory "
                            f"puts {host} at {sites.get(host, '-')!r}")
        elif needs not in report:
            warnings.append(f"{name}: has no {needs}")
        else:
            named.setdefault(host, []).append(name)
            taken[host] = report
    for host, names in named.items():
        if len(names) > 1:  # cannot happen with one directory; kept for merged listings
            warnings.append(f"{host}: described by {len(names)} files; none taken")
            taken.pop(host, None)
    return {"reports": [taken[h] for h in sorted(taken)], "warnings": warnings}


class FilterModule:
    def filters(self):
        return {"carried_reports": carried_reports}
