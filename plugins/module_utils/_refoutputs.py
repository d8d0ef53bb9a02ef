# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the output distribution of a model on its reference sample.

model_publish runs the model on the sample with ONNX Runtime (where model_publish runs: the
controller or a build host, never an edge host) and writes, per output, what the inference
server summarises for live outputs: labels (integer or boolean outputs) counted per value,
scores (floating point outputs) per column with count, mean, std, min and max. model_drift then
compares the two (_drift.compare_outputs). Without ONNX Runtime and numpy there, the reference
simply has no outputs, and the result says so.
"""

from __future__ import annotations

from ansible_collections.edgeml.fleet.plugins.module_utils._refstats import SampleError, read_sample

MAX_LABELS = 64  # as the server: more distinct values are counted as "other"
MAX_COLUMNS = 64  # as the server: a wider score output is summarised as one column
BATCH = 256
ORT_TO_NUMPY = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
                "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
                "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
                "tensor(bool)": "bool"}


def _round(value):
    return float(f"{value:.6g}")


def _labels(chunks):
    counts, other = {}, 0
    for chunk in chunks:
        for value in chunk.ravel().tolist():
            key = str(int(value))
            if key in counts or len(counts) < MAX_LABELS:
                counts[key] = counts.get(key, 0) + 1
            else:
                other += 1
    return {"kind": "labels", "counts": dict(sorted(counts.items())), "other": other}


def _scores(np, chunks):
    rows = np.concatenate([c.reshape(c.shape[0], -1) if c.ndim >= 2 else c.reshape(-1, 1) for c in chunks])
    if rows.shape[1] > MAX_COLUMNS:
        rows = rows.reshape(-1, 1)
    columns = []
    for column in rows.astype(np.float64).T:
        finite = column[np.isfinite(column)]
        entry = {"count": int(finite.size), "nan": int(column.size - finite.size)}
        if finite.size:
            entry.update(mean=_round(float(finite.mean())), std=_round(float(finite.std())),
                         min=_round(float(finite.min())), max=_round(float(finite.max())))
        columns.append(entry)
    return {"kind": "scores", "columns": columns}


def reference_outputs(model_path, sample_path):
    """({output name: summary}, None), or (None, why not) without ONNX Runtime and numpy.
    A model that cannot run on the sample raises SampleError saying so."""
    try:
        import numpy as np  # pylint: disable=import-outside-toplevel
        import onnxruntime as ort  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None, "ONNX Runtime and numpy are not installed where model_publish runs"
    try:
        session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # pylint: disable=broad-except  # onnxruntime's own errors
        raise SampleError(f"{model_path}: ONNX Runtime cannot load the model: {exc}") from None
    specs = {i.name: i for i in session.get_inputs()}
    feeds = {}
    for name, (shape, values, _names) in read_sample(sample_path).items():
        name = name if name is not None else next(iter(specs)) if len(specs) == 1 else None
        if name not in specs:
            raise SampleError(f"{sample_path}: array {name!r} is not an input of the model")
        dtype = ORT_TO_NUMPY.get(specs[name].type)
        if dtype is None:
            raise SampleError(f"{sample_path}: input {name} is {specs[name].type}: no output distribution for it")
        feeds[name] = np.asarray(values, dtype=np.float64).astype(dtype).reshape(shape)
    if set(feeds) != set(specs):
        raise SampleError(f"{sample_path}: the sample has {sorted(feeds)}, the model needs {sorted(specs)}")
    rows = min(f.shape[0] for f in feeds.values())
    names = [o.name for o in session.get_outputs()]
    chunks = {name: [] for name in names}
    for start in range(0, rows, BATCH):
        try:
            answers = session.run(names, {k: v[start:start + BATCH] for k, v in feeds.items()})
        except Exception as exc:  # pylint: disable=broad-except  # onnxruntime's own errors
            raise SampleError(f"{model_path}: running the model on the reference sample "
                              f"{sample_path} failed: {exc}") from None
        for name, answer in zip(names, answers):
            if isinstance(answer, np.ndarray) and answer.dtype.kind in "iubf":
                chunks[name].append(answer)
    out = {}
    for name, parts in chunks.items():
        if not parts:
            continue  # sequences, maps, strings: the server does not summarise them either
        out[name] = _labels(parts) if parts[0].dtype.kind in "iub" else _scores(np, parts)
        out[name]["samples"] = rows
    return out, None
