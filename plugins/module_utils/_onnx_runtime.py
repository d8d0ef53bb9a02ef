# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: model_verify's ONNX Runtime engine (it runs in the runtime's venv).

Decided here: how a model's inputs and outputs are
described in v2 protocol terms, how golden inputs become tensors, and how a session answers a
golden case or a timed run. numpy and onnxruntime are imported only when installed; IMP_ERR
says why they are not.

The execution-provider choice and the ONNX -> v2 datatype table are the inference server's
(edgeml_serve.models.choose_providers, edgeml_serve.protocol): verification imports them, so a
model is checked with the providers and types it will be served with. edgeml_serve is installed
in the runtime's venv next to onnxruntime, and model_verify runs with that venv's python.
"""

from __future__ import annotations

import traceback

from ansible_collections.edgeml.fleet.plugins.module_utils._golden import (
    GoldenError, judge_cases, time_runs)

try:
    import numpy as np
    import onnxruntime as ort
    from edgeml_serve.models import choose_providers
    from edgeml_serve.protocol import ONNX_TO_V2, V2_TO_NUMPY
except ImportError:
    IMP_ERR = traceback.format_exc()
else:
    IMP_ERR = None


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
