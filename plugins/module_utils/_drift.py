# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: drift of a served version's live inputs from its reference sample.

Decided here: how the inference server's running statistics (GET /v2/models/NAME/stats) and the
reference in the version's edgeml-model.json (written by model_publish, _refstats.py) become a
verdict per feature and per model. Per feature: the population stability index of the live
histogram against the reference's, on the same bins; a feature drifts when its PSI is above the
threshold, once it has seen at least min_count values. Standard library only: runs on the host.

The server's answer is read as untrusted data: every figure is checked for type and length, and
a stats answer for another version than the store's is not compared (stale).
"""

from __future__ import annotations

import math

from ansible_collections.edgeml.fleet.plugins.module_utils._refstats import psi

DEFAULT_THRESHOLD = 0.2  # a PSI above this is commonly read as a significant shift
DEFAULT_SHIFT = 0.5  # a score column whose live mean moved by more reference stds than this drifts
MAX_LABELS = 256  # label values compared at most (the server and the reference keep 64 each)
STEADY, DRIFT, LITTLE, NO_REFERENCE, STALE = (
    "steady", "drift", "insufficient traffic", "no reference", "stale")


class DriftError(Exception):
    """Statistics or a reference that cannot be compared: the message says what and where."""


def _counts(value, bins, where):
    if not isinstance(value, list) or len(value) != bins or \
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise DriftError(f"{where}: expected {bins} bin counts (whole numbers), got {str(value)[:80]}")
    return value


def threshold_of(meta, given):
    """The PSI threshold: given (the inventory), else the model's metadata, else 0.2. It must be
    a finite number above 0 (a NaN would make every comparison false: nothing would drift)."""
    where = "psi_threshold"
    value = given
    if value is None:
        drift = meta.get("drift") if isinstance(meta.get("drift"), dict) else {}
        value, where = drift.get("psi_threshold", DEFAULT_THRESHOLD), "the model metadata's drift.psi_threshold"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise DriftError(f"{where} must be a number above 0, got {str(value)[:40]}")
    return float(value)


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DriftError(f"{where}: expected a finite number, got {str(value)[:40]}")
    return float(value)


def _label_counts(entry, where):
    counts = entry.get("counts")
    if not isinstance(counts, dict) or len(counts) > MAX_LABELS:
        raise DriftError(f"{where}: expected label counts (at most {MAX_LABELS} values)")
    other = entry.get("other", 0)
    values = _counts(list(counts.values()) + [other], len(counts) + 1, where)
    return {str(k): v for k, v in zip(counts, values)}, values[-1]


def compare_outputs(model, reference, live, threshold, min_count, shift):
    """Per output of the reference: labels compared by the PSI of their frequencies (the values
    either side, plus "other"), score columns by how many reference standard deviations their
    live mean moved. {output: entry}, and the drifted names."""
    rows, drifted = {}, []
    live = live if isinstance(live, dict) else {}
    for name, ref in sorted(reference.items()):
        where = f"model {model} output {name}"
        if not isinstance(ref, dict) or ref.get("kind") not in ("labels", "scores"):
            raise DriftError(f"{where}: the version's reference is malformed")
        cur = live.get(name)
        if not isinstance(cur, dict) or cur.get("kind") != ref["kind"]:
            rows[name] = {"kind": ref["kind"], "count": 0, "drifted": False, "psi": None}
            continue
        if ref["kind"] == "labels":
            ref_counts, ref_other = _label_counts(ref, f"{where} (reference)")
            live_counts, live_other = _label_counts(cur, f"{where} (server)")
            keys = sorted(set(ref_counts) | set(live_counts))
            count = sum(live_counts.values()) + live_other
            value = psi([ref_counts.get(k, 0) for k in keys] + [ref_other],
                        [live_counts.get(k, 0) for k in keys] + [live_other]) if count >= min_count else None
            entry = {"kind": "labels", "count": count, "psi": value,
                     "drifted": value is not None and value > threshold,
                     "reference": ref_counts, "live": live_counts}
        else:
            ref_columns, live_columns = ref.get("columns"), cur.get("features")
            if not isinstance(ref_columns, list) or not isinstance(live_columns, list) \
                    or len(ref_columns) != len(live_columns) \
                    or not all(isinstance(c, dict) for c in ref_columns + live_columns):
                raise DriftError(f"{where}: the server summarises other score columns than the reference")
            columns = []
            for index, (ref_col, cur_col) in enumerate(zip(ref_columns, live_columns)):
                col = f"{where} column {index}"
                count = _counts([cur_col.get("count", 0)], 1, f"{col} (server count)")[0]
                moved = None
                if count >= min_count and ref_col.get("count"):
                    ref_mean, ref_std = _number(ref_col.get("mean"), f"{col} (reference mean)"), \
                        _number(ref_col.get("std"), f"{col} (reference std)")
                    live_mean = _number(cur_col.get("mean"), f"{col} (server mean)")
                    # a constant reference column: any move at all, beyond rounding, counts
                    moved = abs(live_mean - ref_mean) / max(ref_std, 1e-6 * (1 + abs(ref_mean)))
                columns.append({"column": index, "count": count, "shift": moved,
                                "drifted": moved is not None and moved > shift})
            entry = {"kind": "scores", "count": min((c["count"] for c in columns), default=0),
                     "columns": columns, "drifted": any(c["drifted"] for c in columns)}
        rows[name] = entry
        if entry["drifted"]:
            drifted.append(f"output {name}")
    return rows, drifted


def service_figures(value):
    """The server's answer times and errors for the model (informational: a malformed figure is
    left out, not an error)."""
    value = value if isinstance(value, dict) else {}
    latency = value.get("latency_ms") if isinstance(value.get("latency_ms"), dict) else {}

    def whole(number):
        return number if isinstance(number, int) and not isinstance(number, bool) and number >= 0 else None

    def millis(number):
        ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number) and number >= 0
        return float(number) if ok else None
    errors = value.get("errors") if isinstance(value.get("errors"), dict) else {}
    return {"requests": whole(value.get("requests")), "errors": sum(filter(None, map(whole, errors.values()))),
            "p50_ms": millis(latency.get("p50")), "p95_ms": millis(latency.get("p95"))}


def compare(model, version, meta, stats, threshold, min_count, shift=DEFAULT_SHIFT):
    """The drift report of one model: status, per-input features with their PSI, the worst."""
    reference = meta.get("reference") if isinstance(meta.get("reference"), dict) else None
    report = {"model": model, "version": version, "threshold": threshold, "min_count": min_count,
              "requests": 0, "max_psi": None, "drifted": [], "inputs": {}}
    if not isinstance(stats, dict):
        raise DriftError(f"model {model}: the server's statistics are not a JSON object")
    report["service"] = service_figures(stats.get("service"))
    if stats.get("version") != version:
        report["status"] = STALE
        report["message"] = (f"the server's statistics are of version {str(stats.get('version'))[:80]}, "
                             f"the store serves {version}: not compared (a reload pending?)")
        return report
    requests = stats.get("requests")
    report["requests"] = requests if isinstance(requests, int) and not isinstance(requests, bool) else 0
    if reference is None:
        report["status"] = NO_REFERENCE
        report["message"] = ("the version has no reference statistics: publish it with "
                             "model_publish's reference_sample")
        return report
    live_inputs = stats.get("inputs") if isinstance(stats.get("inputs"), dict) else {}
    seen_enough = False
    ref_inputs = reference.get("inputs")
    if not isinstance(ref_inputs, dict):
        raise DriftError(f"model {model}: the version's reference is malformed (no inputs mapping)")
    for name, entry in sorted(ref_inputs.items()):
        ref_features = entry.get("features") if isinstance(entry, dict) else None
        if not isinstance(ref_features, list) or not all(isinstance(f, dict) for f in ref_features):
            raise DriftError(f"model {model} input {name}: the version's reference is malformed "
                             "(features must be a list of mappings)")
        live = live_inputs.get(name) if isinstance(live_inputs.get(name), dict) else {}
        live_features = live.get("features") if isinstance(live.get("features"), list) else []
        if len(live_features) != len(ref_features):
            raise DriftError(f"model {model} input {name}: the server summarises "
                             f"{len(live_features)} features, the reference {len(ref_features)}")
        rows = []
        for ref, cur in zip(ref_features, live_features):
            where = f"model {model} input {name} feature {ref.get('name')}"
            if len(ref.get("edges") or []) < 2:  # no finite value in the sample: nothing to bin
                rows.append({"feature": str(ref.get("name")), "psi": None, "drifted": False, "count": 0})
                continue
            bins = len(ref.get("counts") or [])
            ref_counts = _counts(ref.get("counts"), bins, f"{where} (reference)")
            if not isinstance(cur, dict) or cur.get("edges") != ref.get("edges"):
                raise DriftError(f"{where}: the server's bins are not the reference's")
            live_counts = _counts(cur.get("counts"), bins, f"{where} (server)")
            # What neither side could summarise (NaN, infinite, huge) is one more bin: a sensor
            # that starts sending NaN is drift, not a lack of traffic.
            ref_missing = _counts([ref.get("nan", 0)], 1, f"{where} (reference nan)")[0]
            live_missing = _counts([cur.get("nan", 0)], 1, f"{where} (server nan)")[0]
            count = sum(live_counts) + live_missing
            value = psi(ref_counts + [ref_missing], live_counts + [live_missing]) if count >= min_count else None
            drifted = value is not None and value > threshold
            seen_enough |= count >= min_count
            rows.append({"feature": str(ref.get("name")), "psi": value, "drifted": drifted, "count": count,
                         "outside_reference": cur.get("outside_reference") if isinstance(
                             cur.get("outside_reference"), int) else None,
                         "mean": cur.get("mean") if isinstance(cur.get("mean"), (int, float)) else None,
                         "reference_mean": ref.get("mean")})
            if drifted:
                report["drifted"].append(f"{name}/{ref.get('name')}")
            if value is not None and (report["max_psi"] is None or value > report["max_psi"]):
                report["max_psi"] = value
        report["inputs"][name] = rows
    ref_outputs = reference.get("outputs")
    if ref_outputs is not None:
        if not isinstance(ref_outputs, dict):
            raise DriftError(f"model {model}: the version's reference is malformed (outputs is not a mapping)")
        report["outputs"], drifted = compare_outputs(model, ref_outputs, stats.get("outputs"), threshold,
                                                     min_count, shift)
        report["drifted"] += drifted
    if report["drifted"]:
        report["status"] = DRIFT
    elif seen_enough:
        report["status"] = STEADY
    else:
        report["status"] = LITTLE
        report["message"] = f"fewer than {min_count} values per feature since the version loaded"
    return report
