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

import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.edgeml.fleet.plugins.module_utils._golden import (
    DEFAULT_TOLERANCE, GoldenError, check_cases, compare_outputs, latency_summary, read_metadata,
    signature_problems)

try:
    import numpy as np
    import onnxruntime as ort
except ImportError:
    IMP_ERR = traceback.format_exc()
else:
    IMP_ERR = None

PREFERRED = ("CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider")
# ONNX TensorProto element types as the v2 protocol names them.
ONNX_TO_V2 = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
              "tensor(int64)": "INT64", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
              "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
              "tensor(string)": "BYTES"}
V2_TO_NUMPY = {"FP32": "float32", "FP64": "float64", "FP16": "float16", "INT8": "int8",
               "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT8": "uint8",
               "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64", "BOOL": "bool",
               "BYTES": "object"}


def _varint(handle):
    shift = result = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise ValueError("truncated varint")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(handle, end):
    """Yield (field number, wire type, value or (offset, length)) of one protobuf message."""
    while handle.tell() < end:
        key = _varint(handle)
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, _varint(handle)
        elif wire == 2:
            length = _varint(handle)
            start = handle.tell()
            yield number, wire, (start, length)
            handle.seek(start + length)
        elif wire in (1, 5):
            handle.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def read_versions(path):
    """(ir_version, {domain: opset}) from an ONNX file's ModelProto, without reading its graph.

    ModelProto field 1 is ir_version, field 8 opset_import (OperatorSetIdProto: 1 domain,
    2 version). The graph (field 7) is skipped with a seek, so large models cost nothing.
    """
    ir_version, opsets = None, {}
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        for number, wire, value in list(_fields(handle, size)):
            if number == 1 and wire == 0:
                ir_version = value
            elif number == 8 and wire == 2:
                start, length = value
                handle.seek(start)
                domain, version = "", 0
                for sub, sub_wire, sub_value in list(_fields(handle, start + length)):
                    if sub == 1 and sub_wire == 2:
                        handle.seek(sub_value[0])
                        domain = handle.read(sub_value[1]).decode("utf-8", "replace")
                    elif sub == 2 and sub_wire == 0:
                        version = sub_value
                opsets[domain or "ai.onnx"] = version
    if ir_version is None:
        raise ValueError("no ir_version field: not an ONNX model")
    return ir_version, opsets


def choose_providers(wanted):
    available = ort.get_available_providers()
    if not wanted or wanted == ["auto"]:
        chosen = [p for p in PREFERRED if p in available]
    else:
        chosen = [p for p in wanted if p in available]
    return chosen + ([] if "CPUExecutionProvider" in chosen else ["CPUExecutionProvider"])


def describe(values):
    return [{"name": v.name, "datatype": ONNX_TO_V2.get(v.type, v.type),
             "shape": [d if isinstance(d, int) else -1 for d in v.shape]} for v in values]


def feeds_for(case, inputs):
    types = {i["name"]: V2_TO_NUMPY.get(i["datatype"], "float32") for i in inputs}
    unknown = set(case["inputs"]) - set(types)
    if unknown:
        raise GoldenError(f"golden inputs {sorted(unknown)} are not inputs of the model "
                          f"({sorted(types)})")
    return {name: np.asarray(value, dtype=types[name]) for name, value in case["inputs"].items()}


def check_golden(session, inputs, cases, tolerance):
    problems, worst, failed = [], 0.0, 0
    for number, case in enumerate(cases, 1):
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds_for(case, inputs))
        actual = {name: value.tolist() for name, value in zip(names, values)}
        case_problems, case_worst = compare_outputs(actual, case["outputs"], tolerance)
        worst = max(worst, case_worst)
        if case_problems:
            failed += 1
            problems.extend(f"case {number}: {p}" for p in case_problems)
    return {"passed": not problems, "cases": len(cases), "failed": failed,
            "max_abs_error": worst, "tolerance": tolerance, "problems": problems}


def check_latency(session, feeds, warmup, runs, budget):
    for _run in range(warmup):
        session.run(None, feeds)
    seconds = []
    for _run in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        seconds.append(time.perf_counter() - started)
    summary = latency_summary(seconds)
    summary["budget_ms"] = budget
    summary["passed"] = budget is None or summary["p95_ms"] <= budget
    return summary


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
    if IMP_ERR:
        module.fail_json(msg=missing_required_lib("onnxruntime and numpy") + " (run this module "
                         "with the inference runtime's interpreter, /opt/edgeml/venv/bin/python)",
                         exception=IMP_ERR)
    params = module.params
    if params["latency_runs"] < 1 or params["warmup_runs"] < 0:
        module.fail_json(msg="latency_runs must be 1 or more and warmup_runs 0 or more")
    path = params["path"]
    model_file = os.path.join(path, params["model_file"]) if os.path.isdir(path) else path
    result = {"changed": False, "passed": False, "model_file": model_file, "checks": {},
              "runtime": {"version": ort.__version__, "providers": []}}
    if not os.path.isfile(model_file):
        module.fail_json(msg=f"model file {model_file} does not exist", **result)
    try:
        metadata = read_metadata(params["metadata"] or
                                 os.path.join(os.path.dirname(model_file), "edgeml-model.json"))
        cases = params["golden"] if params["golden"] is not None else metadata.get("golden") or []
        check_cases(cases, params["metadata"] or "golden")
    except GoldenError as exc:
        module.fail_json(msg=f"model {model_file}: {exc}", **result)
    tolerance = params["tolerance"] if params["tolerance"] is not None else \
        float(metadata.get("tolerance", DEFAULT_TOLERANCE))
    budget = params["latency_budget_ms"] if params["latency_budget_ms"] is not None else \
        metadata.get("latency_budget_ms")

    try:
        result["ir_version"], result["opsets"] = read_versions(model_file)
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"model {model_file} is not a readable ONNX file: {exc}", **result)

    checks = result["checks"]
    try:
        session = ort.InferenceSession(model_file, providers=choose_providers(params["providers"]))
    except Exception as exc:  # pylint: disable=broad-except  # onnxruntime raises many kinds
        checks["runtime"] = {"passed": False, "error": str(exc)}
        module.fail_json(msg=f"check runtime failed: ONNX Runtime {ort.__version__} cannot load "
                             f"{model_file} (IR version {result['ir_version']}, opsets "
                             f"{result['opsets']}): {exc}", **result)
    checks["runtime"] = {"passed": True}
    result["runtime"]["providers"] = session.get_providers()
    inputs, outputs = describe(session.get_inputs()), describe(session.get_outputs())
    result.update(inputs=inputs, outputs=outputs)

    want_in = params["inputs"] if params["inputs"] is not None else metadata.get("inputs")
    want_out = params["outputs"] if params["outputs"] is not None else metadata.get("outputs")
    problems = signature_problems(inputs, want_in, "input") + \
        signature_problems(outputs, want_out, "output")
    checks["signature"] = {"passed": not problems, "problems": problems,
                           "judged": bool(want_in or want_out)}
    try:
        if cases and not problems:
            checks["golden"] = check_golden(session, inputs, cases, tolerance)
        else:
            checks["golden"] = {"passed": not cases, "cases": len(cases), "failed": 0,
                                "problems": [] if not cases else
                                ["not run: the signature does not match"]}
        if checks["golden"]["passed"] and not problems:
            feeds = feeds_for(cases[0], inputs) if cases else {
                i["name"]: np.zeros([d if d > 0 else 1 for d in i["shape"]],
                                    V2_TO_NUMPY.get(i["datatype"], "float32")) for i in inputs}
            checks["latency"] = check_latency(session, feeds, params["warmup_runs"],
                                              params["latency_runs"], budget)
    except (GoldenError, ValueError, TypeError) as exc:
        module.fail_json(msg=f"model {model_file}: golden cases cannot be fed to the model: {exc}",
                         exception=traceback.format_exc(), **result)
    except Exception as exc:  # pylint: disable=broad-except  # a run-time failure of the session
        module.fail_json(msg=f"model {model_file}: inference failed in ONNX Runtime: {exc}",
                         exception=traceback.format_exc(), **result)

    failed = [name for name, check in checks.items() if not check["passed"]]
    if failed:
        details = []
        if "signature" in failed:
            details.append("signature: " + "; ".join(checks["signature"]["problems"]))
        if "golden" in failed:
            details.append("golden: " + "; ".join(checks["golden"]["problems"][:3]))
        if "latency" in failed:
            lat = checks["latency"]
            details.append(f"latency: p95 {lat['p95_ms']} ms is over the budget of "
                           f"{lat['budget_ms']} ms by {round(lat['p95_ms'] - lat['budget_ms'], 3)} ms")
        module.fail_json(msg=f"model {model_file} failed verification: " + " | ".join(details),
                         **result)
    result["passed"] = True
    module.exit_json(**result)


if __name__ == "__main__":
    main()
