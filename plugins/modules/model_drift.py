#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_drift
short_description: Compare a served model's live inputs with its reference sample (drift)
version_added: 0.1.0
description:
  - Reads the running statistics the edgeml inference server keeps for the version it serves
    (C(GET /v2/models/<model>/stats)) and the reference statistics in that version's
    C(edgeml-model.json) in the host's store (written by M(edgeml.fleet.model_publish) from a
    reference sample), and computes the population stability index (PSI) of each input feature's
    live histogram against the reference's, on the same bins.
  - A feature drifts when its PSI is above O(psi_threshold) after at least O(min_count) live
    values. When the version was published with the model's outputs on the reference sample,
    the outputs are compared too (labels by PSI, scores by the shift of their mean; see
    O(output_shift_threshold)). The model's status is V(drift), V(steady), V(insufficient traffic), V(no reference)
    (the version was published without a reference sample) or V(stale) (the server's statistics
    are of another version than the store's).
  - Drift is reported, not a failure; the module fails only when it cannot read the statistics
    or the reference, saying which and why.
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.read_only
  - edgeml.fleet.v2_server
options:
  model:
    description: The served model.
    type: str
    required: true
  store_dir:
    description: The host's model store; the served version's C(edgeml-model.json) is read from
      C(<store_dir>/<model>/current).
    type: path
    default: /var/lib/edgeml/models
  psi_threshold:
    description:
      - PSI above which a feature drifts. Default the model metadata's C(drift.psi_threshold),
        else V(0.2).
    type: float
  min_count:
    description: Live values a feature (or an output) needs before it is compared.
    type: int
    default: 100
  output_shift_threshold:
    description:
      - For a version published with its outputs on the reference sample (C(reference.outputs)),
        a score column drifts when its live mean moved by more than this many of the reference's
        standard deviations. Label outputs drift when the PSI of their frequencies is above
        O(psi_threshold).
    type: float
    default: 0.5
notes:
  - Runs on the edge host with only the Python standard library.
  - The statistics start afresh with each new version the server loads; see docs/monitoring.md.
seealso:
  - module: edgeml.fleet.model_publish
  - module: edgeml.fleet.inference_health
"""

EXAMPLES = r"""
- name: How far has live traffic moved from the reference sample
  edgeml.fleet.model_drift:
    model: fraud-detector
    psi_threshold: 0.25
  register: drift

- name: Say which features drifted
  ansible.builtin.debug:
    msg: "{{ drift.drifted }}"
  when: drift.status == 'drift'
"""

RETURN = r"""
status:
  description: V(drift), V(steady), V(insufficient traffic), V(no reference) or V(stale).
  returned: always
  type: str
  sample: drift
message:
  description: Why there is no verdict (for the statuses other than V(drift) and V(steady)).
  returned: when status is insufficient traffic, no reference or stale
  type: str
model:
  description: The model.
  returned: always
  type: str
version:
  description: The version the store serves (C(sha256:<hex>)).
  returned: always
  type: str
requests:
  description: Requests the server answered with this version since it loaded it.
  returned: always
  type: int
  sample: 1520
threshold:
  description: The PSI threshold used.
  returned: always
  type: float
  sample: 0.2
min_count:
  description: Live values a feature needed for its PSI.
  returned: always
  type: int
max_psi:
  description: The largest PSI of any feature (null when none had enough values).
  returned: always
  type: float
  sample: 0.41
drifted:
  description: The features that drifted, as C(<input>/<feature>).
  returned: always
  type: list
  elements: str
  sample: [transaction/3]
inputs:
  description:
    - Per input, one entry per feature with its C(psi), C(drifted), live C(count),
      C(outside_reference) (values outside the reference's range), live C(mean) and C(reference_mean).
  returned: always
  type: dict
  sample: {"transaction": [{"feature": "3", "psi": 0.41, "drifted": true, "count": 1520,
           "outside_reference": 12, "mean": 7.2, "reference_mean": 4.1}]}
outputs:
  description:
    - Per output of the reference, C(kind) (V(labels) or V(scores)), live C(count) and
      C(drifted); labels with their C(psi) and the C(reference) and C(live) counts per value,
      scores with C(columns), each with its C(shift) (in reference standard deviations).
    - A drifted output is listed in C(drifted) as C(output <name>).
  returned: when the version's reference has outputs
  type: dict
  sample: {"label": {"kind": "labels", "count": 1520, "psi": 0.31, "drifted": true,
           "reference": {"0": 1900, "1": 100}, "live": {"0": 1200, "1": 320}}}
service:
  description: The model's answered C(requests), C(errors) (all statuses) and server-side answer
    times C(p50_ms) and C(p95_ms) since the server started (null where the server gave none).
  returned: always
  type: dict
  sample: {"requests": 15200, "errors": 3, "p50_ms": 0.42, "p95_ms": 1.1}
statistics:
  description: The server's running statistics as it answered them (histograms per feature, output counts).
  returned: when the server answered
  type: dict
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils._drift import DriftError, compare, threshold_of
from ansible_collections.edgeml.fleet.plugins.module_utils._golden import GoldenError, read_metadata
from ansible_collections.edgeml.fleet.plugins.module_utils._store import StoreError, check_model_name
from ansible_collections.edgeml.fleet.plugins.module_utils._v2client import SERVER_ARGS, ProbeError, V2Client


def run(module):
    params = module.params
    model = params["model"]
    try:
        check_model_name(model)
    except StoreError as exc:
        module.fail_json(msg=str(exc))
    current = os.path.join(params["store_dir"], model, "current")
    real = os.path.realpath(current)
    versions = os.path.realpath(os.path.join(params["store_dir"], model, "versions"))
    if not os.path.isdir(real) or os.path.dirname(real) != versions or \
            not re.fullmatch(r"[0-9a-f]{64}", os.path.basename(real)):
        module.fail_json(msg=f"model {model}: no version in service in the store ({current})")
    version = "sha256:" + os.path.basename(real)
    if params["min_count"] < 1:
        module.fail_json(msg=f"min_count must be 1 or more, got {params['min_count']}")
    if not 0 < params["output_shift_threshold"] < float("inf"):
        module.fail_json(msg=f"output_shift_threshold must be a number above 0, got {params['output_shift_threshold']}")
    try:
        meta = read_metadata(os.path.join(real, "edgeml-model.json"))
    except GoldenError as exc:
        module.fail_json(msg=f"model {model}: {exc}")
    client = V2Client(params)
    try:
        status, stats = client.call(f"/v2/models/{model}/stats")
    except ProbeError as exc:
        module.fail_json(msg=f"model {model}: cannot read the server's statistics: {exc}")
    if status != 200 or not isinstance(stats, dict):
        why = stats.get("error") if isinstance(stats, dict) else stats
        module.fail_json(msg=f"model {model}: the server answered HTTP {status} for its statistics: {why}")
    try:
        report = compare(model, version, meta, stats, threshold_of(meta, params["psi_threshold"]),
                         params["min_count"], params["output_shift_threshold"])
    except DriftError as exc:
        module.fail_json(msg=str(exc), statistics=stats)
    module.exit_json(changed=False, statistics=stats, **report)


def main():
    module = AnsibleModule(
        argument_spec={
            **SERVER_ARGS,
            "model": {"type": "str", "required": True},
            "store_dir": {"type": "path", "default": "/var/lib/edgeml/models"},
            "psi_threshold": {"type": "float"},
            "min_count": {"type": "int", "default": 100},
            "output_shift_threshold": {"type": "float", "default": 0.5},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
