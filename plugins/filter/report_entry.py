# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: report_entry
short_description: One model's entry of a host's deploy report
version_added: 0.1.0
description:
  - Builds one entry of C(model_deploy_report), the per-model results that
    P(edgeml.fleet.fleet_report#filter) turns into the run's report, so the roles and playbooks
    that record a result do not spell its keys out by hand.
  - Every entry has C(name), C(ref), C(digest), C(served), C(state), C(health), C(failed) and
    C(message); C(previous), C(p50_ms), C(p95_ms), C(source) and C(signer) only when given. Any
    other key is an error.
positional: _input
options:
  _input:
    description: The model's name (C(*) for an entry about the whole host).
    type: str
    required: true
  state:
    description: What happened, for example C(deployed), C(rolled back) or C(held).
    type: str
    required: true
  ref:
    description: The reference the host was assigned.
    type: str
    default: "-"
  digest:
    description: The digest wanted.
    type: str
    default: "-"
  served:
    description: The digest in service afterwards.
    type: str
    default: ""
  health:
    description: The result of the health check.
    type: str
    default: "-"
  failed:
    description: Whether the host failed on this model (made a boolean).
    type: bool
    default: false
  message:
    description: Why, for an operator.
    type: str
    default: ""
  previous:
    description: The digest that served before.
    type: str
  p50_ms:
    description: Median latency of the health check, in milliseconds.
    type: raw
  p95_ms:
    description: 95th percentile latency of the health check, in milliseconds.
    type: raw
  source:
    description: The registry the version was pulled from.
    type: str
  signer:
    description: Who signed the version in service, as P(edgeml.fleet.model_signature#module) names
      the trusted key or certificate, or C(unsigned) / C(not checked).
    type: str
"""

EXAMPLES = r"""
- name: Record the result
  ansible.builtin.set_fact:
    model_deploy_report: >-
      {{ model_deploy_report + [model.name | edgeml.fleet.report_entry(state='deployed', ref=model.ref,
         digest=digest, served=digest, health='ok')] }}
"""

RETURN = r"""
_value:
  description: The entry, a dict of the keys above.
  type: dict
"""

# The keys of an entry, in the order the report shows them.
MODEL_KEYS = ("name", "ref", "digest", "served", "previous", "state", "health", "p50_ms", "p95_ms",
              "source", "signer", "failed", "message")


def as_bool(value):
    """A boolean, whether a template rendered it as one or as its text."""
    return str(value).lower() == "true"


def report_entry(name, state, ref="-", digest="-", served="", health="-", failed=False, message="", **optional):
    unknown = sorted(set(optional) - set(MODEL_KEYS))
    if unknown:
        raise AnsibleFilterError(f"report_entry: unknown keys {', '.join(unknown)}; an entry has {', '.join(MODEL_KEYS)}")
    entry = {"name": name, "ref": ref, "digest": digest, "served": served, "state": state,
             "health": health, "failed": as_bool(failed), "message": message}
    entry.update(optional)
    return entry


class FilterModule:
    def filters(self):
        return {"report_entry": report_entry}
