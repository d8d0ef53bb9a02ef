# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the golden-case judge, signatures and latency figures (standard
library only).

Decided here: when an answer is close enough to a golden output, how a set of golden cases is
judged and reported, when a signature matches, and how latency is measured and summed up.
model_verify (in-process, onnxruntime) and inference_health (over the v2 protocol) both judge
with judge_cases and time_runs, so a version that passes one is judged alike by the other.
"""

from __future__ import annotations

import json
import math
import os
import time

DEFAULT_TOLERANCE = 1e-4


class GoldenError(Exception):
    """A golden file or case that cannot be used; the message names it."""


def flatten(value):
    """Nested lists -> one flat list (row-major), as the v2 protocol sends tensor data."""
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            out.extend(flatten(item))
        return out
    return [value]


def shape_of(value):
    """The shape of a nested list ([[1, 2, 3]] -> [1, 3]); ragged lists are refused."""
    shape = []
    while isinstance(value, (list, tuple)):
        shape.append(len(value))
        if not value:
            break
        first = value[0]
        if any(isinstance(v, (list, tuple)) != isinstance(first, (list, tuple)) or
               (isinstance(v, (list, tuple)) and len(v) != len(first)) for v in value):
            raise GoldenError(f"ragged tensor: rows of different lengths in {str(value)[:80]}")
        value = first
    return shape


def close(actual, expected, tolerance):
    """|actual - expected| <= tolerance * (1 + |expected|); anything not numeric must be equal."""
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        return actual == expected
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return False
    if math.isnan(expected):
        return math.isnan(actual)
    return abs(actual - expected) <= tolerance * (1 + abs(expected))


def compare_outputs(actual, expected, tolerance):
    """Compare one case's outputs. actual/expected: {name: nested list}.

    Only the outputs ``expected`` names are checked (a reference case may check just the label).
    Returns (problems, max_abs_error): problems is a list of sentences, empty when all agree.
    """
    problems = []
    worst = 0.0
    for name, want in expected.items():
        if name not in actual:
            problems.append(f"output '{name}' is missing (got {sorted(actual)})")
            continue
        got_flat, want_flat = flatten(actual[name]), flatten(want)
        if len(got_flat) != len(want_flat):
            problems.append(f"output '{name}' has {len(got_flat)} values, expected {len(want_flat)}")
            continue
        bad = 0
        first_bad = None
        for index, (got, exp) in enumerate(zip(got_flat, want_flat)):
            if _numeric(got) and _numeric(exp):
                worst = max(worst, abs(got - exp))
            if not close(got, exp, tolerance):
                bad += 1
                if first_bad is None:
                    first_bad = (index, got, exp)
        if bad:
            index, got, exp = first_bad
            problems.append(f"output '{name}': {bad} of {len(want_flat)} values off (first at "
                            f"[{index}]: got {got!r}, expected {exp!r}, tolerance {tolerance})")
    return problems, worst


def judge_cases(cases, answer, tolerance):
    """Run every golden case through answer(case) -> {output name: values} and judge the outputs.

    Returns {passed, cases, failed, max_abs_error, tolerance, problems}; each problem names its
    case (numbered from 1).
    """
    problems, worst, failed = [], 0.0, 0
    for number, case in enumerate(cases, 1):
        case_problems, case_worst = compare_outputs(answer(case), case["outputs"], tolerance)
        worst = max(worst, case_worst)
        if case_problems:
            failed += 1
            problems.extend(f"case {number}: {p}" for p in case_problems)
    return {"passed": not problems, "cases": len(cases), "failed": failed,
            "max_abs_error": worst, "tolerance": tolerance, "problems": problems}


def _numeric(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))


def percentile(values, q):
    """Nearest-rank percentile of a non-empty list (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds):
    """p50/p95/max in milliseconds from a list of durations in seconds."""
    return {"p50_ms": round(percentile(seconds, 50) * 1000, 3),
            "p95_ms": round(percentile(seconds, 95) * 1000, 3),
            "max_ms": round(max(seconds) * 1000, 3),
            "samples": len(seconds)}


def time_runs(call, runs, warmup=0):
    """latency_summary of runs calls of call(), after warmup untimed ones."""
    for _run in range(warmup):
        call()
    seconds = []
    for _run in range(runs):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return latency_summary(seconds)


def read_metadata(path):
    """Read an edgeml-model.json; a missing file gives {}, a broken one a GoldenError."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise GoldenError(f"{path}: not readable as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GoldenError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_cases(cases, where):
    """Validate golden cases ([{inputs: {...}, outputs: {...}}]); return them."""
    if not isinstance(cases, list):
        raise GoldenError(f"{where}: golden must be a list of {{inputs, outputs}} cases")
    for number, case in enumerate(cases, 1):
        if not isinstance(case, dict) or not isinstance(case.get("inputs"), dict) \
                or not isinstance(case.get("outputs"), dict) or not case["inputs"]:
            raise GoldenError(f"{where}: golden case {number} needs 'inputs' and 'outputs' "
                              "mappings of tensor name to values")
        for name, value in case["inputs"].items():
            shape_of(value)  # raises on ragged data
            if not isinstance(value, list):
                raise GoldenError(f"{where}: golden case {number} input '{name}' must be a "
                                  "(nested) list with the batch dimension first")
    return cases


def signature_problems(actual, expected, kind):
    """Compare [{name, datatype, shape}] lists; -1 (or a missing shape) matches any size."""
    problems = []
    by_name = {item["name"]: item for item in actual}
    for want in expected or []:
        got = by_name.get(want.get("name"))
        if got is None:
            problems.append(f"{kind} '{want.get('name')}' is missing (the model has "
                            f"{sorted(by_name)})")
            continue
        if want.get("datatype") and got["datatype"] != want["datatype"]:
            problems.append(f"{kind} '{got['name']}' is {got['datatype']}, expected "
                            f"{want['datatype']}")
        shape = want.get("shape")
        if shape is not None:
            got_shape = got["shape"]
            if len(got_shape) != len(shape) or any(
                    w not in (-1, None) and g not in (-1, None) and w != g
                    for g, w in zip(got_shape, shape)):
                problems.append(f"{kind} '{got['name']}' has shape {got_shape}, expected {shape}")
    extra = sorted(set(by_name) - {w.get("name") for w in expected or []})
    if expected and kind == "input" and extra:
        problems.append(f"the model needs inputs the signature does not name: {extra}")
    return problems
