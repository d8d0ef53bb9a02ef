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
  - Takes the host variables of the hosts a run targeted and returns the lines of a table sorted
    by site and host. A host that deployed or audited models (C(model_deploy_report), set by
    the role P(edgeml.fleet.model_deploy#role)) has one row per model - model, digest, state,
    health, latency, who signed it; other hosts one row with their provisioning state.
  - A host missing from O(alive) (it failed or was unreachable) is shown as C(FAILED).
  - After the totals, the message of every failed model, then of every model a maintenance window
    holds back (C(staged, waiting for window Sat 02:00-04:00 Europe/Berlin ...)).
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
  description: The table's lines, a header first, a totals line last.
  type: list
  elements: str
"""

from ansible_collections.edgeml.fleet.plugins.filter.fleet_report import WAITING_STATES, fleet_report

COLUMNS = ("SITE", "HOST", "CONNECTIVITY", "MODEL", "DIGEST", "STATE", "HEALTH", "P50 ms", "P95 ms",
           "SIGNED BY")


def _short(digest):
    return digest.split(":", 1)[-1][:12] if digest else "-"


def _ms(value):
    return "-" if value in (None, "", "None") else f"{float(value):.2f}"


def fleet_table(hostvars_list, alive):
    report = fleet_report(hostvars_list, alive)
    rows = []
    for host in report["hosts"]:
        base = (host["site"], host["host"], host["connectivity"])
        if host["models"]:
            for model in host["models"]:
                state = model["state"] if host["reachable"] else "FAILED"
                if host.get("reported_at"):
                    state = f"{model['state']} (reported {host['reported_at']})"
                rows.append(base + (model["name"], _short(model.get("served") or model.get("digest")),
                                    state, model.get("health", "-"), _ms(model.get("p50_ms")),
                                    _ms(model.get("p95_ms")), model.get("signer") or "-"))
        else:
            rows.append(base + ("-", "-", host["state"], "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (COLUMNS, *rows)]
    totals = report["totals"]
    lines.append(f"{totals['hosts']} hosts in {totals['sites']} sites, {totals['ok']} ok, "
                 f"{totals['failed']} failed; models: " +
                 (", ".join(f"{n} {state}" for state, n in sorted(totals["model_states"].items()))
                  or "none"))
    failures = [f"{h['host']}/{m['name']}: {m['message']}" for h in report["hosts"]
                for m in h["models"] if m["failed"] and m.get("message")]
    lines.extend(failures)
    lines.extend(f"{h['host']}/{m['name']}: {m['message']}" for h in report["hosts"]
                 for m in h["models"] if m["state"] in WAITING_STATES and m.get("message"))
    return lines


class FilterModule:
    def filters(self):
        return {"fleet_table": fleet_table}
