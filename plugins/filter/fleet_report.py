# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.edgeml.fleet.plugins.filter.report_entry import MODEL_KEYS, as_bool

# Model states of a version a maintenance window holds back (not failures): staged and waiting
# for the apply window, waiting for the download window (or a removal for the apply window).
WAITING_STATES = ("staged", "would stage", "waiting")

DOCUMENTATION = r"""
name: fleet_report
short_description: Build the JSON report of a fleet run
version_added: 0.1.0
description:
  - Takes the host variables of the hosts a run targeted and returns one document - per host its
    site, connectivity, state and, per model, the digest wanted and served, the state
    (deployed, unchanged, rolled back, failed verification, awaiting offline bundle, staged,
    waiting, ...), health and latency - plus totals.
  - A host whose new version a maintenance window holds back has state C(staged) (downloaded,
    waiting for the apply window) or C(waiting) (waiting for the download window); it is not
    failed and counts as ok. The summary playbook writes it as JSON for operators and
    automation controllers.
  - A host missing from O(alive) (it failed or was unreachable) has state C(FAILED).
  - A host at a disconnected site with a result report carried home from its offline bootstrap
    (C(edgeml_offline_report), which the summary playbook reads from C(edgeml_results_dir)) is
    described by that report, with its time in C(reported_at), unless this run reached and
    deployed it.
options:
  _input:
    description: Host variables of every targeted host.
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
- name: Write the run's report
  run_once: true
  delegate_to: localhost
  ansible.builtin.copy:
    content: "{{ groups['sites'] | map('extract', hostvars) | edgeml.fleet.fleet_report(ansible_play_hosts) | to_nice_json }}"
    dest: edgeml-report.json
    mode: "0600"
"""

RETURN = r"""
_value:
  description: The report, C({hosts, totals}).
  type: dict
"""


def _host_state(hostvars, alive):
    name = hostvars.get("inventory_hostname")
    models = hostvars.get("model_deploy_report") or []
    if name not in alive or any(m.get("failed") for m in models):
        return "FAILED"
    if models:
        if all(m.get("state") == "awaiting offline bundle" for m in models):
            return "awaiting offline bundle"
        for state in WAITING_STATES:  # a version held back by a maintenance window
            if any(m.get("state") == state for m in models):
                return state
        return "ok"
    report = hostvars.get("edge_host_report") or {}
    if not report:
        return "not provisioned"
    return "provisioned" if report.get("provisioned") else "checked"


def _model(entry):
    out = {key: entry.get(key) for key in MODEL_KEYS if key in entry}
    out["failed"] = as_bool(entry.get("failed"))
    for key in ("p50_ms", "p95_ms"):
        if out.get(key) in ("", "None"):
            out[key] = None
    return out


def _carried(hostvars, alive):
    """The result report carried home from a disconnected site, when it says more than the run.

    A host the run reached and deployed or audited speaks for itself; one it could not reach,
    or could only mark as awaiting its bundle, is described by its last carried report.
    """
    carried = hostvars.get("edgeml_offline_report")
    if not isinstance(carried, dict) or not carried.get("models"):
        return None
    own = hostvars.get("model_deploy_report") or []
    if hostvars.get("inventory_hostname") in alive and own and \
            any(m.get("state") != "awaiting offline bundle" for m in own):
        return None
    return carried


def fleet_report(hostvars_list, alive):
    alive = set(alive)
    hosts = []
    for hostvars in hostvars_list:
        carried = _carried(hostvars, alive)
        runtime = (carried or hostvars).get("edgeml_runtime" if not carried else "runtime") or {}
        models = [_model(m) for m in (carried or hostvars).get(
            "models" if carried else "model_deploy_report") or []]
        state = _host_state(hostvars, alive)
        if carried:
            state = "FAILED" if any(m["failed"] for m in models) else "ok"
        hosts.append({
            "host": str(hostvars.get("inventory_hostname")),
            "site": str(hostvars.get("edgeml_site", "-")),
            "connectivity": str(hostvars.get("edgeml_connectivity", "-")),
            "state": state,
            "reachable": str(hostvars.get("inventory_hostname")) in alive,
            "reported_at": carried.get("reported_at") if carried else None,
            "runtime": {"onnxruntime": (runtime.get("onnxruntime") or {}).get("version"),
                        "service": (runtime.get("service") or {}).get("active"),
                        "arch": runtime.get("arch")},
            "models": models,
        })
    hosts.sort(key=lambda h: (h["site"], h["host"]))
    return {"hosts": hosts, "totals": report_totals(hosts)}


def report_totals(hosts):
    """The totals of a report's hosts: hosts, sites, ok, failed, and models per state."""
    states = {}
    for host in hosts:
        for model in host.get("models") or []:
            state = str(model.get("state")) if isinstance(model, dict) else "?"
            states[state] = states.get(state, 0) + 1
    failed = sum(1 for h in hosts if h.get("state") == "FAILED")
    return {"hosts": len(hosts), "sites": len({str(h.get("site", "-")) for h in hosts}),
            "ok": len(hosts) - failed, "failed": failed, "model_states": states}


class FilterModule:
    def filters(self):
        return {"fleet_report": fleet_report}
