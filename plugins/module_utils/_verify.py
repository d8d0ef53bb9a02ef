# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: model_verify's run, check by check.

Decided here: where the model file and its expectations come from (options first, then the
version's edgeml-model.json), the order of the four checks (runtime, signature, golden, latency)
and which are skipped after a failure, and the message that says which check failed and by how
much. The engine is in _onnx_runtime.py, the golden-case judge in _golden.py.
"""

from __future__ import annotations

import os
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.edgeml.fleet.plugins.module_utils import _onnx_runtime as engine
from ansible_collections.edgeml.fleet.plugins.module_utils._golden import (
    DEFAULT_TOLERANCE, GoldenError, check_cases, read_metadata, signature_problems)
from ansible_collections.edgeml.fleet.plugins.module_utils._onnx import read_versions


def expectations(module, model_file):
    """(golden cases, tolerance, latency budget, wanted inputs, wanted outputs): options first,
    then the metadata file."""
    params = module.params
    metadata = read_metadata(params["metadata"] or
                             os.path.join(os.path.dirname(model_file), "edgeml-model.json"))
    cases = params["golden"] if params["golden"] is not None else metadata.get("golden") or []
    check_cases(cases, params["metadata"] or "golden")
    tolerance = params["tolerance"] if params["tolerance"] is not None else \
        float(metadata.get("tolerance", DEFAULT_TOLERANCE))
    budget = params["latency_budget_ms"] if params["latency_budget_ms"] is not None else \
        metadata.get("latency_budget_ms")
    want_in = params["inputs"] if params["inputs"] is not None else metadata.get("inputs")
    want_out = params["outputs"] if params["outputs"] is not None else metadata.get("outputs")
    return cases, tolerance, budget, want_in, want_out


def failure_details(checks):
    """One phrase per failed check, with what it found."""
    failed = [name for name, check in checks.items() if not check["passed"]]
    details = []
    if "signature" in failed:
        details.append("signature: " + "; ".join(checks["signature"]["problems"]))
    if "golden" in failed:
        details.append("golden: " + "; ".join(checks["golden"]["problems"][:3]))
    if "latency" in failed:
        lat = checks["latency"]
        details.append(f"latency: p95 {lat['p95_ms']} ms is over the budget of "
                       f"{lat['budget_ms']} ms by {round(lat['p95_ms'] - lat['budget_ms'], 3)} ms")
    return details


def run(module):
    """model_verify's whole run: load the model, run the checks, exit or fail."""
    if engine.IMP_ERR:
        module.fail_json(msg=missing_required_lib("onnxruntime, numpy and edgeml-serve") + " (run this module "
                         "with the inference runtime's interpreter, /opt/edgeml/venv/bin/python)",
                         exception=engine.IMP_ERR)
    params = module.params
    if params["latency_runs"] < 1 or params["warmup_runs"] < 0:
        module.fail_json(msg="latency_runs must be 1 or more and warmup_runs 0 or more")
    path = params["path"]
    model_file = os.path.join(path, params["model_file"]) if os.path.isdir(path) else path
    result = {"changed": False, "passed": False, "model_file": model_file, "checks": {},
              "runtime": {"version": engine.runtime_version(), "providers": []}}
    if not os.path.isfile(model_file):
        module.fail_json(msg=f"model file {model_file} does not exist", **result)
    try:
        cases, tolerance, budget, want_in, want_out = expectations(module, model_file)
    except GoldenError as exc:
        module.fail_json(msg=f"model {model_file}: {exc}", **result)

    try:
        result["ir_version"], result["opsets"] = read_versions(model_file)
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"model {model_file} is not a readable ONNX file: {exc}", **result)

    checks = result["checks"]
    try:
        session = engine.open_session(model_file, params["providers"])
    except Exception as exc:  # pylint: disable=broad-except  # onnxruntime raises many kinds
        checks["runtime"] = {"passed": False, "error": str(exc)}
        module.fail_json(msg=f"check runtime failed: ONNX Runtime {engine.runtime_version()} "
                             f"cannot load {model_file} (IR version {result['ir_version']}, "
                             f"opsets {result['opsets']}): {exc}", **result)
    checks["runtime"] = {"passed": True}
    result["runtime"]["providers"] = session.get_providers()
    inputs, outputs = engine.describe(session.get_inputs()), engine.describe(session.get_outputs())
    result.update(inputs=inputs, outputs=outputs)

    problems = signature_problems(inputs, want_in, "input") + \
        signature_problems(outputs, want_out, "output")
    checks["signature"] = {"passed": not problems, "problems": problems,
                           "judged": bool(want_in or want_out)}
    try:
        if cases and not problems:
            checks["golden"] = engine.check_golden(session, inputs, cases, tolerance)
        else:
            checks["golden"] = {"passed": not cases, "cases": len(cases), "failed": 0,
                                "problems": [] if not cases else
                                ["not run: the signature does not match"]}
        if checks["golden"]["passed"] and not problems:
            feeds = engine.feeds_for(cases[0], inputs) if cases else engine.zero_feeds(inputs)
            checks["latency"] = engine.check_latency(session, feeds, params["warmup_runs"],
                                                     params["latency_runs"], budget)
    except (GoldenError, ValueError, TypeError) as exc:
        module.fail_json(msg=f"model {model_file}: golden cases cannot be fed to the model: {exc}",
                         exception=traceback.format_exc(), **result)
    except Exception as exc:  # pylint: disable=broad-except  # a run-time failure of the session
        module.fail_json(msg=f"model {model_file}: inference failed in ONNX Runtime: {exc}",
                         exception=traceback.format_exc(), **result)

    details = failure_details(checks)
    if details:
        module.fail_json(msg=f"model {model_file} failed verification: " + " | ".join(details),
                         **result)
    result["passed"] = True
    module.exit_json(**result)
