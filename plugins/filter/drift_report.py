# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import math

DOCUMENTATION = r"""
name: drift_report
short_description: Build the fleet drift report (JSON) from each host's model_drift results
version_added: 0.1.0
description:
  - Takes the host variables of the hosts the monitor playbook targeted, each with the
    M(edgeml.fleet.model_drift) results it registered in C(edgeml_drift), and returns one
    document - per site and model, the hosts with their status, traffic and worst PSI, each
    feature's worst PSI over the site's hosts, and whether the site drifted - plus totals.
  - A host of a disconnected site is measured through the result report carried home from its
    last offline bootstrap (C(edgeml_offline_report), with a C(drift) list); its entries say
    C(source=result report) and C(reported_at), the date its figures were taken.
  - A host without results (unreachable, failed, or a disconnected site with no carried report)
    is listed with the reason in C(unmeasured).
options:
  _input:
    description: Host variables of every targeted host.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Write the fleet drift report
  run_once: true
  delegate_to: localhost
  ansible.builtin.copy:
    content: "{{ groups['sites'] | map('extract', hostvars) | edgeml.fleet.drift_report | to_nice_json }}"
    dest: edgeml-drift.json
    mode: "0600"
"""

RETURN = r"""
_value:
  description: The report, C({sites, unmeasured, totals}).
  type: dict
"""


def _hostname(hostvars):
    return str(hostvars.get("inventory_hostname", "?"))


def _number(value):
    """A finite number (below 1e15), or None: a host's result is data from that host, and one
    odd value (a 400-digit integer, 1e308 that sums to infinity) must not break the report of
    the whole fleet."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) and abs(value) < 1e15 else None
    except OverflowError:  # an integer too large for a float
        return None


def _text(value):
    return "" if value is None else str(value)[:300]


def _service(value):
    """The model's answer times and errors on the host (figures from the host: numbers or None)."""
    value = value if isinstance(value, dict) else {}
    return {"p50_ms": _number(value.get("p50_ms")), "p95_ms": _number(value.get("p95_ms")),
            "errors": _number(value.get("errors"))}


def drift_report(hostvars_list):
    sites, unmeasured = {}, []
    totals = {"hosts": 0, "measured": 0, "models": 0, "drift": 0}
    for hostvars in hostvars_list:
        totals["hosts"] += 1
        host, site = _hostname(hostvars), str(hostvars.get("edgeml_site", "-"))
        registered = hostvars.get("edgeml_drift") if isinstance(hostvars.get("edgeml_drift"), dict) else {}
        # skipped (a disconnected site) or unreachable: not measured live
        results = None if registered.get("skipped") or registered.get("unreachable") else registered.get("results")
        source, reported_at = "live", None
        carried = hostvars.get("edgeml_offline_report")
        if not isinstance(results, list) and isinstance(carried, dict) and isinstance(carried.get("drift"), list):
            # a disconnected site's figures, carried home in its result report: dated
            results, source, reported_at = carried["drift"], "result report", _text(carried.get("reported_at"))
        if not isinstance(results, list):
            why = ("disconnected site: its statistics come home with its result report"
                   if hostvars.get("edgeml_connectivity") == "disconnected" else "not measured (unreachable or failed)")
            unmeasured.append({"host": host, "site": site, "reason": why})
            continue
        totals["measured"] += 1
        for result in results:
            if not isinstance(result, dict) or not result.get("model"):
                continue
            model = str(result["model"])
            entry = sites.setdefault(site, {}).setdefault(model, {
                "site": site, "model": model, "drifted": False, "requests": 0, "hosts": [], "features": {}})
            if result.get("failed") or "status" not in result:  # failed (failed_when: false keeps msg)
                entry["hosts"].append({"host": host, "status": "failed", "message": _text(result.get("msg"))})
                continue
            status = _text(result.get("status"))
            requests = _number(result.get("requests")) or 0
            drifted = result.get("drifted") if isinstance(result.get("drifted"), list) else []
            entry["hosts"].append({"host": host, "status": status, "version": _text(result.get("version")),
                                   "source": source, "reported_at": reported_at,
                                   **_service(result.get("service")),
                                   "requests": requests, "max_psi": _number(result.get("max_psi")),
                                   "drifted": [_text(d) for d in drifted], "message": _text(result.get("message"))})
            entry["requests"] += requests
            entry["drifted"] |= status == "drift"
            inputs = result.get("inputs") if isinstance(result.get("inputs"), dict) else {}
            for name, features in inputs.items():
                for feature in features if isinstance(features, list) else []:
                    if not isinstance(feature, dict):
                        continue
                    key = f"{name}/{feature.get('feature')}"
                    worst = entry["features"].setdefault(key, {"feature": key, "psi": None, "drifted": False})
                    value = _number(feature.get("psi"))
                    if value is not None and (worst["psi"] is None or value > worst["psi"]):
                        worst["psi"] = value
                    worst["drifted"] |= bool(feature.get("drifted"))
    out = []
    for site in sorted(sites):
        for model in sorted(sites[site]):
            entry = sites[site][model]
            entry["features"] = list(entry["features"].values())
            totals["models"] += 1
            totals["drift"] += entry["drifted"]
            out.append(entry)
    return {"sites": out, "unmeasured": unmeasured, "totals": totals}


class FilterModule:
    def filters(self):
        return {"drift_report": drift_report}
