# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: model_verify's ONNX Runtime engine (it runs in the runtime's venv).

Decided here: which execution providers a session uses, how a model's inputs and outputs are
described in v2 protocol terms, how golden inputs become tensors, and how a session answers a
golden case or a timed run. numpy and onnxruntime are imported only when installed; IMP_ERR
says why they are not.

PREFERRED, ONNX_TO_V2, V2_TO_NUMPY and choose_providers are the inference server's decisions
too (edgeml_serve.models and edgeml_serve.protocol): they sit together below so that, where
edgeml_serve is installed, they become imports from it in this one place.
"""

from __future__ import annotations

import traceback

from ansible_collections.edgeml.fleet.plugins.module_utils._golden import (
    GoldenError, judge_cases, time_runs)

try:
    import numpy as np
    import onnxruntime as ort
except ImportError:
    IMP_ERR = traceback.format_exc()
else:
    IMP_ERR = None

# -- shared with the inference server (edgeml_serve): keep alike, or import from there -------
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


def choose_providers(wanted, available=None):
    """The execution providers to use: the best the host has, always ending with CPU."""
    available = available if available is not None else ort.get_available_providers()
    if not wanted or wanted == ["auto"]:
        chosen = [p for p in PREFERRED if p in available]
    else:
        chosen = [p for p in wanted if p in available]
    return chosen + ([] if "CPUExecutionProvider" in chosen else ["CPUExecutionProvider"])
# ---------------------------------------------------------------------------------------------


def runtime_version():
    return ort.__version__


def open_session(model_file, providers):
    """An InferenceSession on the providers chosen from the wanted list; raises what ort raises."""
    return ort.InferenceSession(model_file, providers=choose_providers(providers))


def describe(values):
    """Session inputs or outputs as [{name, datatype (v2), shape (-1 for a symbolic size)}]."""
    return [{"name": v.name, "datatype": ONNX_TO_V2.get(v.type, v.type),
             "shape": [d if isinstance(d, int) else -1 for d in v.shape]} for v in values]


def feeds_for(case, inputs):
    """The tensors of a golden case's inputs, typed as the model's inputs (described)."""
    types = {i["name"]: V2_TO_NUMPY.get(i["datatype"], "float32") for i in inputs}
    unknown = set(case["inputs"]) - set(types)
    if unknown:
        raise GoldenError(f"golden inputs {sorted(unknown)} are not inputs of the model "
                          f"({sorted(types)})")
    return {name: np.asarray(value, dtype=types[name]) for name, value in case["inputs"].items()}


def zero_feeds(inputs):
    """Zeros for every input (a symbolic size becomes 1): something to time without cases."""
    return {i["name"]: np.zeros([d if d > 0 else 1 for d in i["shape"]],
                                V2_TO_NUMPY.get(i["datatype"], "float32")) for i in inputs}


def check_golden(session, inputs, cases, tolerance):
    """Judge the golden cases on the session (see _golden.judge_cases)."""
    def answer(case):
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds_for(case, inputs))
        return {name: value.tolist() for name, value in zip(names, values)}
    return judge_cases(cases, answer, tolerance)


def check_latency(session, feeds, warmup, runs, budget):
    """Time runs inferences after warmup ones; passed when p95 is within budget (ms, or None)."""
    summary = time_runs(lambda: session.run(None, feeds), runs, warmup)
    summary["budget_ms"] = budget
    summary["passed"] = budget is None or summary["p95_ms"] <= budget
    return summary
