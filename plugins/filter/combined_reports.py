# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.edgeml.fleet.plugins.filter.fleet_report import report_totals

DOCUMENTATION = r"""
name: combined_reports
short_description: One fleet report from the reports of a job's slices
version_added: 0.1.0
description:
  - Takes the fleet reports (as C(edgeml.fleet.summary) writes them) of the slices of one job -
    a workflow's nodes run side by side, each with its own C(edgeml_target), or a controller's
    sliced job - and returns one report with every host and the totals counted again.
  - A host that more than one slice reports is kept once, with a warning - as a failed one if
    any slice says it failed; a report that is not one is left out with a warning.
options:
  _input:
    description: The slices' reports.
    type: list
    elements: dict
    required: true
  expected:
    description: How many slice reports there should be; C(missing) on the result says how many did not come.
    type: int
"""

EXAMPLES = r"""
- name: Combine the slices' reports
  ansible.builtin.set_fact:
    fleet: "{{ query('ansible.builtin.vars', *query('ansible.builtin.varnames', '^edgeml_slice_report_')) | edgeml.fleet.combined_reports }}"
"""

RETURN = r"""
_value:
  description: C({hosts, totals, slices, missing, warnings}), C(hosts) and C(totals) as in one run's report.
  type: dict
"""


def combined_reports(reports, expected=None):
    hosts, warnings, slices = {}, [], 0
    for index, report in enumerate(reports or []):
        if not isinstance(report, dict) or not isinstance(report.get("hosts"), list):
            warnings.append(f"report {index + 1}: not a fleet report; left out")
            continue
        slices += 1
        for host in report["hosts"]:
            if not isinstance(host, dict) or not isinstance(host.get("host"), str) \
                    or not isinstance(host.get("models"), list):
                warnings.append(f"report {index + 1}: an entry that is not a host; left out")
            elif host["host"] in hosts:
                warnings.append(f"{host['host']}: in more than one slice; kept once, failed if any says so")
                if host.get("state") == "FAILED":  # a failure is never hidden behind another slice's ok
                    hosts[host["host"]] = host
            else:
                hosts[host["host"]] = host
    ordered = sorted(hosts.values(), key=lambda h: (str(h.get("site", "-")), h["host"]))
    missing = max(0, int(expected) - slices) if expected is not None else 0
    return {"hosts": ordered, "totals": report_totals(ordered), "slices": slices, "missing": missing,
            "warnings": warnings}


class FilterModule:
    def filters(self):
        return {"combined_reports": combined_reports}
