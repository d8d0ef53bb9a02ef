#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_verify
short_description: Check a staged model version with ONNX Runtime before it goes into service
version_added: 0.1.0
description:
  - Loads one version of a model with the ONNX Runtime installed on the host, using the host's
    execution providers, and runs four checks. Each is reported; the module fails when any
    fails, with a message that says which check and by how much.
  - C(runtime) - the installed runtime loads the model (its IR version and operator sets are
    supported). The model's IR version and opsets are read from the file and reported.
  - C(signature) - inputs and outputs match the expected names, datatypes and shapes
    (-1 matches any size).
  - C(golden) - every golden case gives the expected outputs within the tolerance,
    |actual - expected| <= tolerance * (1 + |expected|).
  - C(latency) - after warm-up, the 95th percentile of O(latency_runs) runs of the first golden
    case is within the budget.
  - Expectations come from the version's C(edgeml-model.json) unless given as options.
  - Run it with the runtime's interpreter (the role M(edgeml.fleet.model_deploy) sets
    C(ansible_python_interpreter) to the venv of P(edgeml.fleet.inference_runtime#role)).
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.read_only
requirements:
  - onnxruntime
  - numpy
options:
  path:
    description: A version directory of the store (or any directory holding the model), or the
      C(.onnx) file itself.
    type: path
    required: true
  model_file:
    description: The model's file name inside O(path) when O(path) is a directory.
    type: str
    default: model.onnx
  metadata:
    description: The model's C(edgeml-model.json); by default the one next to the model file.
    type: path
  inputs:
    description: Expected inputs, C({name, datatype, shape}) each; overrides the metadata's.
    type: list
    elements: dict
  outputs:
    description: Expected outputs, C({name, datatype, shape}) each; overrides the metadata's.
    type: list
    elements: dict
  golden:
    description: Golden cases, C({inputs, outputs}) each with tensors as nested lists, batch
      dimension first; overrides the metadata's. An output left out of a case is not checked.
    type: list
    elements: dict
  tolerance:
    description: Tolerance for golden outputs; default the metadata's, else V(0.0001).
    type: float
  latency_budget_ms:
    description: Budget for the p95 latency of one inference; default the metadata's
      C(latency_budget_ms); none means latency is measured but not judged.
    type: float
  latency_runs:
    description: Timed runs after warm-up.
    type: int
    default: 20
  warmup_runs:
    description: Untimed runs first (sessions are slow on their first calls).
    type: int
    default: 3
  providers:
    description: Execution providers, best first; V(auto) takes CUDA, OpenVINO, then CPU from
      what the installed runtime offers. CPU is always the last resort.
    type: list
    elements: str
    default: [auto]
notes:
  - Requires onnxruntime and numpy on the interpreter that runs it; the edge host's runtime venv
    has both.
seealso:
  - module: edgeml.fleet.inference_health
  - module: edgeml.fleet.model_sync
"""

EXAMPLES = r"""
- name: Verify the staged version before activating it
  edgeml.fleet.model_verify:
    path: "{{ staged.version_dir }}"
  vars:
    ansible_python_interpreter: /opt/edgeml/venv/bin/python

- name: Verify with the operator's own expectations
  edgeml.fleet.model_verify:
    path: /var/lib/edgeml/models/fraud-detector/current
    inputs: [{name: transaction, datatype: FP32, shape: [-1, 8]}]
    latency_budget_ms: 2
  vars:
    ansible_python_interpreter: /opt/edgeml/venv/bin/python
"""

RETURN = r"""
passed:
  description: Whether every check passed (always true when the module did not fail).
  returned: always
  type: bool
  sample: true
model_file:
  description: The file that was loaded.
  returned: always
  type: str
  sample: /var/lib/edgeml/models/fraud-detector/versions/5d1c…/model.onnx
ir_version:
  description: The model's ONNX IR version.
  returned: when the file could be read
  type: int
  sample: 8
opsets:
  description: Operator set versions the model imports, by domain (C(ai.onnx) for the default).
  returned: when the file could be read
  type: dict
  sample: {"ai.onnx": 17, "ai.onnx.ml": 1}
runtime:
  description: The ONNX Runtime that checked the model and the providers the session used.
  returned: always
  type: dict
  sample: {"version": "1.32.0", "providers": ["CPUExecutionProvider"]}
checks:
  description: Per check, whether it passed and what it found.
  returned: always
  type: dict
  sample:
    runtime: {passed: true}
    signature: {passed: true, problems: []}
    golden: {passed: true, cases: 4, failed: 0, max_abs_error: 2.9e-08, problems: []}
    latency: {passed: true, p50_ms: 0.041, p95_ms: 0.052, max_ms: 0.07, samples: 20, budget_ms: 5}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils._verify import run


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "model_file": {"type": "str", "default": "model.onnx"},
            "metadata": {"type": "path"},
            "inputs": {"type": "list", "elements": "dict"},
            "outputs": {"type": "list", "elements": "dict"},
            "golden": {"type": "list", "elements": "dict"},
            "tolerance": {"type": "float"},
            "latency_budget_ms": {"type": "float"},
            "latency_runs": {"type": "int", "default": 20},
            "warmup_runs": {"type": "int", "default": 3},
            "providers": {"type": "list", "elements": "str", "default": ["auto"]},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
