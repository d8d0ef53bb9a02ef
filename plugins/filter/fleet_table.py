# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_table
short_description: Format a per-site, per-host summary of a fleet run as text lines
version_added: 0.1.0
description:
  - Takes the host variables of the hosts a run targeted and returns the lines of a table, one
    row per host, sorted by site and host, with the state each host was left in.
  - A host missing from O(alive) (it failed or was unreachable) is shown as C(FAILED).
options:
  _input:
    description: Host variables of every targeted host, for example
      C(groups['sites'] | map('extract', hostvars)).
    type: list
    elements: dict
    required: true
  alive:
    description: Hosts still in the play (C(ansible_play_hosts)).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Show the fleet summary
  run_once: true
  ansible.builtin.debug:
    msg: "{{ groups['sites'] | map('extract', hostvars) | edgeml.fleet.fleet_table(ansible_play_hosts) }}"
"""

RETURN = r"""
_value:
  description: The table's lines, a header first.
  type: list
  elements: str
"""

COLUMNS = ("SITE", "HOST", "CONNECTIVITY", "STATE", "PYTHON", "FREE MiB")


def _row(hostvars, alive):
    name = hostvars.get("inventory_hostname")
    report = hostvars.get("edge_host_report") or {}
    if name not in alive:
        state = "FAILED"
    elif not report:
        state = "not provisioned"
    else:
        state = "provisioned" if report.get("provisioned") else "checked"
    return (str(hostvars.get("edgeml_site", "-")), str(name),
            str(hostvars.get("edgeml_connectivity", "-")), state,
            str(report.get("python", "-")), str(report.get("free_mb", "-")))


def fleet_table(hostvars_list, alive):
    rows = sorted(_row(hv, set(alive)) for hv in hostvars_list)
    widths = [max(len(r[i]) for r in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (COLUMNS, *rows)]
    failed = sum(1 for r in rows if r[3] == "FAILED")
    sites = len({r[0] for r in rows})
    lines.append(f"{len(rows)} hosts in {sites} sites, {len(rows) - failed} ok, {failed} failed")
    return lines


class FilterModule:
    def filters(self):
        return {"fleet_table": fleet_table}
