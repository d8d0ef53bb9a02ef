# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: reference statistics of a model's inputs, and drift against them.

model_publish reads a reference sample (the training or validation inputs: .npy, .npz or CSV)
and writes per-feature summaries into edgeml-model.json: count, mean, std, min, max and a
histogram (equal-width bins over the sample's range). Live traffic is binned on the same edges,
so the population stability index (psi) compares the two. Standard library only: the same code
reads summaries on an edge host.

A sample is input from whoever trained the model, so it is parsed, never unpickled: numeric
dtypes only, sizes checked against the bytes present, every read capped.
"""

from __future__ import annotations

import array
import ast
import csv
import io
import lzma
import math
import os
import sys
import zipfile
import zlib

MAX_SAMPLE_BYTES = 256 << 20  # a reference sample is a few MiB; more is a mistake, not a sample
# Values, all arrays together: bytes alone do not bound the work (a 1-byte dtype compresses
# 256 MiB of zeros into a 260 KB .npz), and each value is summarised as a float.
MAX_VALUES = 4 << 20
MAX_MAGNITUDE = 1e150  # beyond this a value's square overflows a float: not summarised
MAX_FEATURES = 1024  # more columns than this are summarised as one (flat) feature
MAX_BINS = 100
CHANNELS = (1, 3, 4)  # an image tensor's channel count: grey, RGB, RGBA
NPY_MAGIC = b"\x93NUMPY"
# numpy dtype kind + size -> array typecode (the sizes are checked when a sample is read)
TYPECODES = {"f4": "f", "f8": "d", "i1": "b", "u1": "B", "b1": "B", "i2": "h", "u2": "H",
             "i4": "i", "u4": "I", "i8": "q", "u8": "Q"}


class SampleError(Exception):
    """A reference sample that cannot be read: the message says what and where."""


def parse_npy(data, where):
    """(shape, values) of an .npy file's bytes (C order, a numeric dtype)."""
    if not data.startswith(NPY_MAGIC) or len(data) < 10:
        raise SampleError(f"{where}: not an .npy file (no NUMPY magic)")
    major = data[6]
    if major == 1:
        size, start = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3):
        size, start = int.from_bytes(data[8:12], "little"), 12
    else:
        raise SampleError(f"{where}: .npy format version {major} is not one this reads (1 to 3)")
    if size > 65536 or start + size > len(data):
        raise SampleError(f"{where}: .npy header runs past the file")
    try:
        header = ast.literal_eval(data[start:start + size].decode("latin-1"))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise SampleError(f"{where}: .npy header is not a literal dict ({exc})") from None
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
        raise SampleError(f"{where}: .npy header lacks descr, fortran_order or shape")
    descr, shape = header["descr"], header["shape"]
    if not isinstance(descr, str) or len(descr) < 3 or descr[1:] not in TYPECODES:
        raise SampleError(f"{where}: dtype {descr!r} is not a plain number type (float, int, "
                          "uint or bool; object arrays are never read)")
    if header["fortran_order"] is not False:
        raise SampleError(f"{where}: the array is in Fortran order; save it in C order "
                          "(numpy.ascontiguousarray)")
    if not isinstance(shape, tuple) or not shape or \
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise SampleError(f"{where}: shape {shape!r} is not a tuple of sizes with a sample axis")
    values = array.array(TYPECODES[descr[1:]])
    if values.itemsize != int(descr[2:]):
        raise SampleError(f"{where}: dtype {descr} has no {descr[2:]}-byte type on this platform")
    count = math.prod(shape)
    if count > MAX_VALUES:  # before any arithmetic on it (a shape can be thousands of digits)
        raise SampleError(f"{where}: more than {MAX_VALUES} values; subsample the reference "
                          "(a few thousand rows are enough)")
    body = data[start + size:]
    if count * values.itemsize != len(body):
        raise SampleError(f"{where}: shape {shape} of {descr} needs {count * values.itemsize} bytes, "
                          f"the file has {len(body)}")
    values.frombytes(body)
    if values.itemsize > 1 and descr[0] in "<>" and (descr[0] == ">") != (sys.byteorder == "big"):
        values.byteswap()
    return shape, values


def _read_capped(handle, where, limit):
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise SampleError(f"{where}: more than {limit} bytes; a reference sample should be a few MiB")
    return data


def parse_csv(text, where):
    """(shape, values, column names or None) of numeric CSV, a header row optional."""
    values, names, width, rows = array.array("d"), None, None, 0
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if width is None:
                width = len(row)
                try:
                    values.extend(float(cell) for cell in row)
                except ValueError:
                    names = [cell.strip() for cell in row]
                    continue
                rows += 1
                continue
            if len(row) != width:
                raise SampleError(f"{where}, line {number}: {len(row)} columns, the first row has {width}")
            try:
                values.extend(float(cell) for cell in row)
            except ValueError as exc:
                raise SampleError(f"{where}, line {number}: not a number ({exc})") from None
            rows += 1
            if len(values) > MAX_VALUES:
                raise SampleError(f"{where}: more than {MAX_VALUES} values; subsample the reference "
                                  "(a few thousand rows are enough)")
    except csv.Error as exc:
        raise SampleError(f"{where}: not CSV ({exc})") from None
    if not rows:
        raise SampleError(f"{where}: no rows")
    return (rows, width), values, names


def read_sample(path, limit=MAX_SAMPLE_BYTES):
    """{input name or None: (shape, values, feature names or None)} of a reference sample.

    .npy and .csv give one array (None: the model's only input); .npz one per input, named by
    its members (inputs.npy is the input "inputs")."""
    where = str(path)
    try:
        if where.endswith(".npz"):
            return _read_npz(path, where, limit)
        with open(path, "rb") as handle:
            data = _read_capped(handle, where, limit)
    except OSError as exc:
        raise SampleError(f"cannot read the reference sample {where}: {exc.strerror or exc}") from None
    if where.endswith(".npy"):
        shape, values = parse_npy(data, where)
        return {None: (shape, values, None)}
    if where.endswith(".csv"):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SampleError(f"{where}: not UTF-8 text ({exc})") from None
        shape, values, names = parse_csv(text, where)
        return {None: (shape, values, names)}
    raise SampleError(f"{where}: a reference sample is an .npy, .npz or .csv file")


def _read_npz(path, where, limit):
    arrays, total, count = {}, 0, 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                if info.is_dir():
                    continue
                if not name.endswith(".npy") or "/" in name or "\\" in name or name == ".npy":
                    raise SampleError(f"{where}: member {name!r} is not a plain NAME.npy")
                total += info.file_size  # what it claims; the read below holds it to that
                # No dtype has more than 8 bytes a value: a member larger than the values cap
                # allows is refused before it is unpacked.
                if total > limit or info.file_size > MAX_VALUES * 8 + 65536 + 16:
                    raise SampleError(f"{where}: more than {limit} bytes unpacked; a reference "
                                      "sample should be a few MiB")
                with archive.open(info) as member:
                    data = _read_capped(member, f"{where}:{name}", info.file_size)
                shape, values = parse_npy(data, f"{where}:{name}")
                count += len(values)
                if count > MAX_VALUES:
                    raise SampleError(f"{where}: more than {MAX_VALUES} values in its arrays together; "
                                      "subsample the reference (a few thousand rows are enough)")
                arrays[name[:-4]] = (shape, values, None)
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError, zlib.error,
            lzma.LZMAError) as exc:  # encrypted or unknown compression, corrupt streams
        raise SampleError(f"{where}: not a readable .npz (zip) file: {exc}") from None
    if not arrays:
        raise SampleError(f"{where}: no arrays in it")
    return arrays


def layout(shape):
    """How a sample's axes map to features: ('features', F), ('channels_first' / 'channels_last',
    C) for an image batch, or ('flat', 1) for anything else. Axis 0 is the sample axis."""
    if len(shape) == 1:
        return "flat", 1
    if len(shape) == 2:
        return ("features", shape[1]) if 0 < shape[1] <= MAX_FEATURES else ("flat", 1)
    if len(shape) == 4:
        first, last = shape[1] in CHANNELS, shape[3] in CHANNELS
        # Both can look like channels only for tiny images: the fewer wins, a tie is NCHW
        # (ONNX's convention).
        if first and (not last or shape[1] <= shape[3]):
            return "channels_first", shape[1]
        if last:
            return "channels_last", shape[3]
    return "flat", 1


def feature_values(shape, values):
    """[(index, values of that feature)] in the layout's order."""
    kind, width = layout(shape)
    if width == 1:
        return kind, [values]
    if kind in ("features", "channels_last"):
        return kind, [values[j::width] for j in range(width)]
    plane = math.prod(shape[2:])
    out = []
    for channel in range(width):
        part = array.array(values.typecode)
        for first in range(channel * plane, len(values), width * plane):
            part.extend(values[first:first + plane])
        out.append(part)
    return kind, out


def summarize(values, bins=10):
    """count, nan, mean, std, min, max and an equal-width histogram (edges, counts) of values.

    nan counts what is not summarised: NaN, infinite, or beyond MAX_MAGNITUDE (the server
    counts the same way, so a sensor that starts sending them shows as drift)."""
    finite = array.array("d", (v for v in values if abs(v) < MAX_MAGNITUDE))  # NaN compares False
    nan = len(values) - len(finite)
    if not finite:
        return {"count": 0, "nan": nan, "edges": [], "counts": []}
    count = len(finite)
    mean = math.fsum(finite) / count
    std = math.sqrt(max(math.fsum((v - mean) ** 2 for v in finite) / count, 0.0))
    low, high = min(finite), max(finite)
    edges = bin_edges(low, high, bins)
    return {"count": count, "nan": nan, "mean": _round(mean), "std": _round(std),
            "min": low, "max": high, "edges": edges, "counts": histogram(finite, edges)}


def bin_edges(low, high, bins):
    if high <= low:
        return [low, low]
    step = (high - low) / bins
    return [low + step * i for i in range(bins)] + [high]


def histogram(values, edges):
    """Counts of values per bin; values below the first edge or above the last fall in the end
    bins (live traffic outside the reference range still counts, in the outermost bin)."""
    bins = max(len(edges) - 1, 1)
    counts = [0] * bins
    low, high = edges[0], edges[-1]
    scale = bins / (high - low) if high > low else 0.0
    for value in values:
        if math.isnan(value):
            continue
        index = int((value - low) * scale) if scale else 0
        counts[min(max(index, 0), bins - 1)] += 1
    return counts


def psi(reference, live, floor=1e-4):
    """Population stability index of live counts against reference counts on the same bins
    (0: the same distribution; above 0.2 is commonly read as a significant shift)."""
    if len(reference) != len(live):
        raise ValueError(f"{len(reference)} reference bins against {len(live)} live bins")
    ref_total, live_total = sum(reference), sum(live)
    if not ref_total or not live_total:
        return None
    total = 0.0
    for ref, cur in zip(reference, live):
        expected = max(ref / ref_total, floor)
        actual = max(cur / live_total, floor)
        total += (actual - expected) * math.log(actual / expected)
    return _round(total)


def reference_stats(path, bins=10, input_names=None):
    """The `reference` entry of edgeml-model.json for a sample: per input, its layout and one
    summary per feature (column, or image channel). input_names: the model's inputs, to name
    a single .npy/.csv array (it must then be exactly one)."""
    if not 1 <= bins <= MAX_BINS:
        raise SampleError(f"reference bins must be 1 to {MAX_BINS}, got {bins}")
    arrays = read_sample(path)
    inputs = {}
    for name, (shape, values, names) in arrays.items():
        if name is None:
            if input_names and len(input_names) != 1:
                raise SampleError(f"{path}: one array for a model with inputs {sorted(input_names)}; "
                                  "give an .npz with one NAME.npy per input")
            name = input_names[0] if input_names else "input"
        elif input_names and name not in input_names:
            raise SampleError(f"{path}: array {name!r} is not an input of the model "
                              f"({', '.join(sorted(input_names))})")
        if not shape[0]:
            raise SampleError(f"{path}: array {name!r} has no samples (shape {shape})")
        kind, parts = feature_values(shape, values)
        features = []
        for index, part in enumerate(parts):
            summary = summarize(part, bins)
            summary["name"] = names[index] if names and kind == "features" else str(index)
            features.append(summary)
        inputs[name] = {"layout": kind, "samples": shape[0], "shape": list(shape[1:]),
                        "features": features}
    return {"source": os.path.basename(str(path)), "bins": bins, "inputs": inputs}


def _round(value):
    return float(f"{value:.6g}")
