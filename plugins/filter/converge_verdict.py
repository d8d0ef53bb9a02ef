# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: converge_verdict
short_description: Whether a host is already what a run would make it (the fast path)
version_added: 0.1.0
description:
  - Compares the answer of M(edgeml.fleet.host_probe) with the desired state on the controller.
  - A host is converged when all of these hold. Its stamp records the same desired-state
    fingerprint (lookup C(edgeml.fleet.converge_fingerprint)), and nothing drifted since. It
    serves the same set of models, each at the digest it is assigned (tags resolved on the
    controller), and each healthy. A model a disconnected host is still C(awaiting offline
    bundle) counts as converged while neither the digest assigned nor the one served changed,
    because no run can change it.
  - For a converged host it also returns the report a full run would have written (every model
    C(unchanged), with the probe's latencies and the recorded signer) and the runtime facts.
positional: _input
options:
  _input:
    description: The registered result of M(edgeml.fleet.host_probe).
    type: dict
    required: true
  fingerprint:
    description: This run's fingerprint of the host's desired state.
    type: str
    required: true
  models:
    description: The host's models (C(edgeml_models)), each with C(name) and C(ref), maybe C(digest).
    type: list
    elements: dict
    required: true
  digests:
    description: "Tags resolved to digests on the controller, C({ref: digest})."
    type: dict
    default: {}
  full_check:
    description: Force the full walk (C(edgeml_full_check)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Decide whether this host can skip the full walk
  ansible.builtin.set_fact:
    verdict: >-
      {{ probe | edgeml.fleet.converge_verdict(fingerprint=lookup('edgeml.fleet.converge_fingerprint'),
         models=edgeml_models, digests=hostvars['localhost']['model_deploy_digests'] | default({})) }}
"""

RETURN = r"""
_value:
  description: The verdict.
  type: dict
  contains:
    converged:
      description: True when the host can skip the full walk.
      type: bool
    reasons:
      description: Why not, one line each (empty when converged).
      type: list
      elements: str
    report:
      description: The host's model report entries (see P(edgeml.fleet.report_entry#filter)), when converged.
      type: list
      elements: dict
    runtime:
      description: The runtime facts for the fleet report (C(edgeml_runtime)), when converged.
      type: dict
"""

from ansible_collections.edgeml.fleet.plugins.filter.report_entry import as_bool, report_entry


AWAITING = "awaiting offline bundle"


def _wanted(model, digests):
    return model.get("digest") or (digests or {}).get(model.get("ref")) or ""


def _vouched(have, wanted):
    """The probe saw this model as the stamp left it: serving the digest and healthy, or awaiting."""
    if have.get("state") == AWAITING:
        return have.get("current") == have.get("served")
    return have.get("state") == "served" and have.get("current") == wanted and have.get("healthy") is True


def converge_verdict(probe, fingerprint, models, digests=None, full_check=False):
    probe = probe or {}
    reasons = []
    if as_bool(full_check):
        reasons.append("edgeml_full_check is set: every host gets the full walk")
    if probe.get("skipped") or "drift" not in probe:
        reasons.append("the host was not probed")
    elif not probe.get("stamp"):
        if not probe.get("drift"):  # host_probe says why; the verdict does not lean on it
            reasons.append("the host has no converge stamp")
    elif probe.get("fingerprint") != fingerprint:
        reasons.append("the desired state changed since the last full run "
                       "(models, variables, trust or the collection's code)")
    reasons.extend(probe.get("drift") or [])
    served = probe.get("models") or {}
    names = [m.get("name") for m in models]
    if probe.get("stamp") and sorted(served) != sorted(names):
        reasons.append(f"serves {', '.join(sorted(served)) or 'no model'}, assigned "
                       f"{', '.join(sorted(names)) or 'none'}")
    report, unchecked = [], []
    for model in models:
        wanted = _wanted(model, digests)
        have = served.get(model.get("name")) or {}
        if not wanted:
            reasons.append(f"{model.get('name')}: {model.get('ref')} is not resolved on the controller")
        elif have and have.get("digest") != wanted:
            reasons.append(f"{model.get('name')}: {wanted} is assigned, {have.get('digest')} was when converged")
        elif have and not _vouched(have, wanted):
            unchecked.append(f"{model.get('name')}: the probe did not find it serving {wanted} and healthy")
        if have.get("state") == AWAITING:  # as the full run reports it: nothing it could change
            report.append(report_entry(model.get("name"), state=AWAITING, ref=model.get("ref", "-"), digest=wanted,
                                       served=have.get("served") or "", message=have.get("message") or ""))
            continue
        report.append(report_entry(
            model.get("name"), state="unchanged", ref=model.get("ref", "-"), digest=wanted,
            served=wanted, previous=wanted, source="store", health="ok",
            p50_ms=have.get("p50_ms"), p95_ms=have.get("p95_ms"), signer=have.get("signer") or "not checked"))
    if not reasons:  # the probe skips the health check once a host drifted: only then is this news
        reasons.extend(unchecked)
    if reasons:
        return {"converged": False, "reasons": reasons, "report": [], "runtime": {}}
    return {"converged": True, "reasons": [], "report": report, "runtime": probe.get("runtime") or {}}


class FilterModule:
    def filters(self):
        return {"converge_verdict": converge_verdict}
