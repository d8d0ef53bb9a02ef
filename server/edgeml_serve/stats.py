"""Running statistics of one served model version: its live inputs and outputs, in fixed memory.

Inputs are summarised the way the model's reference sample was at publish time (the `reference`
entry of edgeml-model.json, written by edgeml.fleet's model_publish): per input and feature
(a column, or an image channel) the count, NaNs, sum and sum of squares (mean and std), min, max,
and a histogram on the reference's own bin edges, so the drift checks can compare the two bin by
bin. Without a reference, an input's features are summarised without a histogram.

Outputs: integer outputs (labels) are counted per value (up to MAX_LABELS distinct values, the
rest as "other"); float outputs get count, mean, standard deviation, min and max per column.

Every table is allocated when the version loads and never grows: memory is the same after a
million requests as after one. An image request contributes at most MAX_VALUES_PER_FEATURE
values per channel (an even stride over its pixels), which keeps the cost per request small and
the histogram's shape.
"""

import math
import time

import numpy as np

from .metrics import _label

MAX_FEATURES = 1024
MAX_VALUES_PER_FEATURE = 256
MAX_MAGNITUDE = 1e150  # beyond this a value's square overflows: counted, not summarised
BATCH = 64  # small requests summarised at once (they wait, VersionStats.observe)
BUFFER_VALUES = 16384  # a table's buffer of rows waiting to be summarised: at most this many values
SMALL = 1024  # values in an array: a request whose arrays are all this small waits with others
MAX_LABELS = 64
MAX_OUTPUT_COLUMNS = 64
CHANNELS = (1, 3, 4)


def _layout(shape, reference_layout=None):
    """The features of one request's array (axis 0 is the batch): (kind, count)."""
    if reference_layout in ("features", "channels_first", "channels_last", "flat"):
        kind = reference_layout
    elif len(shape) == 2 and 0 < shape[1] <= MAX_FEATURES:
        kind = "features"
    elif len(shape) == 4 and shape[1] in CHANNELS:
        kind = "channels_first"
    elif len(shape) == 4 and shape[3] in CHANNELS:
        kind = "channels_last"
    else:
        kind = "flat"
    width = {"features": lambda: shape[1] if len(shape) == 2 else 0,
             "channels_first": lambda: shape[1] if len(shape) == 4 else 0,
             "channels_last": lambda: shape[3] if len(shape) == 4 else 0,
             "flat": lambda: 1}[kind]()
    return kind, width


def _stride(rows):
    return max(1, -(-rows // MAX_VALUES_PER_FEATURE))


def _columns(array, kind, thin=True):
    """The array as (values, features), one column per feature, at most MAX_VALUES_PER_FEATURE
    rows (an even stride, taken on a view before anything is copied; thin=False: every row);
    None when its rank does not fit the layout."""
    stride = _stride if thin else (lambda _rows: 1)
    if kind == "flat":
        flat = array.reshape(-1)
        return flat[::stride(flat.shape[0])].reshape(-1, 1)
    if kind == "features":
        return array[::stride(array.shape[0])] if array.ndim == 2 else None
    if array.ndim != 4:
        return None
    if kind == "channels_last":
        pixels = array.reshape(-1, array.shape[3])
        return pixels[::stride(pixels.shape[0])]
    planes = array.reshape(array.shape[0], array.shape[1], -1)  # channels first: (N, C, H*W)
    thinned = planes[:, :, ::stride(planes.shape[0] * planes.shape[2])]
    return np.moveaxis(thinned, 1, -1).reshape(-1, array.shape[1])


def _edges(features, width):
    """The reference's bin edges per feature, or None if they are not usable ones: one dict per
    feature, each with the same number (2 or more) of finite, non-decreasing numbers."""
    if len(features) != width or not all(isinstance(f, dict) for f in features):
        return None
    edges = [f.get("edges") for f in features]
    for row in edges:
        if not isinstance(row, list) or len(row) < 2 or len(row) != len(edges[0]) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row) \
                or any(b < a for a, b in zip(row, row[1:])):
            return None
    return edges


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


class FeatureTable:
    """Running summaries of the features of one input (fixed size)."""

    def __init__(self, kind, width, reference=None):
        self.kind, self.width = kind, width
        features = reference.get("features") if isinstance(reference, dict) else None
        features = features if isinstance(features, list) else []
        self.names = [str(f.get("name", i)) if isinstance(f, dict) else str(i) for i, f in enumerate(features)]
        self.names = (self.names + [str(i) for i in range(len(self.names), width)])[:width]
        self.count = np.zeros(width, np.int64)
        self.nan = np.zeros(width, np.int64)
        self.mean = np.zeros(width, np.float64)
        self.m2 = np.zeros(width, np.float64)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)
        # Rows wait here and are summarised a buffer at a time: numpy's cost per call, not per
        # value, is what a request pays otherwise (a thinned image's 256 rows as much as 64).
        self.buffer = np.zeros((max(BATCH, BUFFER_VALUES // max(width, 1)), width), np.float64)
        self.filled = 0
        edges = _edges(features, width)
        self.bins = 0
        if edges:
            self.bins = len(edges[0]) - 1
            self.edges = edges
            self.start = np.array([e[0] for e in edges], np.float64)
            span = np.array([e[-1] - e[0] for e in edges], np.float64)
            with np.errstate(divide="ignore"):
                self.scale = np.where(span > 0, self.bins / np.where(span > 0, span, 1), 0.0)
            self.counts = np.zeros(width * self.bins, np.int64)
            self.outside = np.zeros(width, np.int64)
            self.first = np.array([e[0] for e in edges], np.float64)
            self.last = np.array([e[-1] for e in edges], np.float64)

    def observe(self, array, thin=True):
        """Add one request's array (thin=False: a batch of small requests, each within the
        thinning's limit already, so every row of it counts)."""
        if array.size == 0:
            return True  # nothing to count (a zero-sized axis)
        values = _columns(array, self.kind, thin)
        if values is None or values.shape[-1] != self.width:
            return False  # not the shape this version's statistics were made for
        rows, capacity = values.shape[0], self.buffer.shape[0]
        if rows >= capacity:
            self._add(values.astype(np.float64, copy=False))
            return True
        if self.filled + rows > capacity:
            self.flush()
        self.buffer[self.filled:self.filled + rows] = values
        self.filled += rows
        return True

    def flush(self):
        if self.filled:
            self._add(self.buffer[:self.filled])
            self.filled = 0

    def _add(self, values):
        # NaN, infinities and magnitudes whose square would overflow are counted (as "nan"),
        # not summarised, as the reference's statistics count them.
        with np.errstate(invalid="ignore"):
            finite = np.abs(values) < MAX_MAGNITUDE
        self.nan += (~finite).sum(axis=0)
        added = finite.sum(axis=0)
        clean = np.where(finite, values, 0.0)
        # Mean and spread merged batch by batch (Chan et al.), not from sums of squares, which
        # lose every digit of a small spread around a large mean.
        batch_mean = clean.sum(axis=0) / np.maximum(added, 1)
        deviation = np.where(finite, values - batch_mean, 0.0)
        batch_m2 = (deviation * deviation).sum(axis=0)
        total = self.count + added
        delta = batch_mean - self.mean
        share = np.divide(added, total, out=np.zeros(self.width), where=total > 0)
        self.mean += delta * share
        self.m2 += batch_m2 + delta * delta * self.count * share
        self.count = total
        self.low = np.minimum(self.low, np.where(finite, values, np.inf).min(axis=0))
        self.high = np.maximum(self.high, np.where(finite, values, -np.inf).max(axis=0))
        if self.bins:
            # The same binning as the reference's histogram: equal width, the ends open.
            index = np.clip((clean - self.start) * self.scale, 0, self.bins - 1).astype(np.int64)
            flat = (index + np.arange(self.width) * self.bins)[finite]
            self.counts += np.bincount(flat, minlength=self.width * self.bins)
            self.outside += (finite & ((values < self.first) | (values > self.last))).sum(axis=0)

    def report(self):
        self.flush()
        features = []
        for i, name in enumerate(self.names[:self.width]):
            count = int(self.count[i])
            entry = {"name": name, "count": count, "nan": int(self.nan[i])}
            if count:
                entry.update(mean=_number(self.mean[i]), std=_number(math.sqrt(max(self.m2[i] / count, 0.0))),
                             min=_number(self.low[i]), max=_number(self.high[i]))
            if self.bins:
                entry.update(edges=self.edges[i], counts=self.counts[i * self.bins:(i + 1) * self.bins].tolist(),
                             outside_reference=int(self.outside[i]))
            features.append(entry)
        return {"layout": self.kind, "features": features}


class OutputTable:
    """Running summaries of one output: labels counted, or scores summarised per column."""

    def __init__(self):
        self.labels = {}  # value -> count (at most MAX_LABELS; the rest in "other")
        self.other = 0
        self.columns = None  # FeatureTable for float outputs, made on the first answer

    def observe(self, array, thin=True):
        if array.dtype.kind in "iub":
            if array.size <= BATCH:  # a few labels: cheaper one by one than through np.unique
                pairs = ((value, 1) for value in array.ravel().tolist())
            else:
                values, counts = np.unique(array, return_counts=True)
                pairs = zip(values.tolist(), counts.tolist())
            for value, count in pairs:
                key = str(value)
                if key in self.labels or len(self.labels) < MAX_LABELS:
                    self.labels[key] = self.labels.get(key, 0) + count
                else:
                    self.other += count
        elif array.dtype.kind == "f":
            if self.columns is None:
                width = array.shape[1] if array.ndim == 2 and array.shape[1] <= MAX_OUTPUT_COLUMNS else 1
                self.columns = FeatureTable("features" if width > 1 else "flat", width)
            self.columns.observe(array, thin)

    def report(self):
        if self.columns is not None:
            return dict(self.columns.report(), kind="scores")
        return {"kind": "labels", "counts": dict(sorted(self.labels.items())), "other": self.other}


class VersionStats:
    """The statistics of one loaded version (a new version starts from zero)."""

    def __init__(self, version, inputs, reference):
        self.version = version
        self.since = time.time()
        self.requests = 0
        self.skipped = 0  # requests whose arrays did not have the shape the tables were made for
        self.inputs = {}
        self.errors = 0  # requests whose statistics failed (skipped, counted, logged sparingly)
        reference = reference if isinstance(reference, dict) else None
        ref_inputs = reference.get("inputs") if reference else None
        ref_inputs = ref_inputs if isinstance(ref_inputs, dict) else {}
        self.reference = {"source": str(reference.get("source")), "bins": reference.get("bins")} \
            if reference else None
        for spec in inputs:
            ref = ref_inputs.get(spec["name"])
            ref = ref if isinstance(ref, dict) else None
            shape = [d if d > 0 else 1 for d in spec["shape"]] or [1]
            kind, width = _layout(shape, (ref or {}).get("layout") if isinstance((ref or {}).get("layout"), str) else None)
            if ref and isinstance(ref.get("features"), list) and ref["features"]:
                width = len(ref["features"])
            if 0 < width <= MAX_FEATURES:
                self.inputs[spec["name"]] = FeatureTable(kind, width, ref)
        self.outputs = {}
        # small requests not yet summarised (at most BATCH): the arrays of each input and output
        # (waiting_keys: their names), one list per name
        self.waiting_keys, self.waiting, self.waiting_count = None, [], 0

    def observe(self, arrays, outputs):
        """Count a request. Small ones (every array at most SMALL values: a row or a few) wait,
        up to BATCH of them, and are summarised together: the per-request cost is then a few
        list appends, not a round of numpy calls per input and output. Only the arrays wait
        (numpy arrays, which the garbage collector does not track), not the request's dicts."""
        self.requests += 1
        values = [*arrays.values(), *outputs.values()]
        for array in values:
            if array.__class__ is not np.ndarray or array.size > SMALL:
                self._observe(arrays, outputs, 1)
                return
        keys = (*arrays, None, *outputs)  # None separates inputs from outputs
        if keys != self.waiting_keys:
            self.flush()
            self.waiting_keys = keys
            self.waiting = [[] for _value in values]
        for column, array in zip(self.waiting, values):
            # a copy: a binary input is a view of the whole request body, which must not be
            # kept alive by a few values waiting here
            column.append(array.copy())
        self.waiting_count += 1
        if self.waiting_count >= BATCH:
            self.flush()

    def flush(self):
        """Summarise the requests waiting as one batch (they have the same arrays), or one by one
        when their shapes do not stack."""
        if not self.waiting_count:
            return
        split = self.waiting_keys.index(None)
        inputs, outputs = self.waiting_keys[:split], self.waiting_keys[split + 1:]
        columns, count = self.waiting, self.waiting_count
        self.waiting = [[] for _column in columns]
        self.waiting_count = 0
        try:
            merged = [np.concatenate(column) for column in columns]
        except (ValueError, TypeError):  # shapes that do not stack: one by one
            for index in range(count):
                self._observe(dict(zip(inputs, (c[index] for c in columns[:len(inputs)]))),
                              dict(zip(outputs, (c[index] for c in columns[len(inputs):]))), 1)
            return
        # a request whose array does not fit counts once as skipped, one with nothing in it not at all
        self._observe(dict(zip(inputs, merged[:len(inputs)])), dict(zip(outputs, merged[len(inputs):])),
                      dict({name: count for name in self.inputs},
                           **{name: sum(a.size > 0 for a in column) for name, column in zip(inputs, columns)}),
                      thin=False)

    def _observe(self, arrays, outputs, requests, thin=True):
        """requests: how many requests a rejected input counts as, 1 or {input: count}."""
        for name, table in self.inputs.items():
            array = arrays.get(name)
            if array is None or array.dtype.kind not in "iufb" or not table.observe(array, thin):
                self.skipped += requests[name] if isinstance(requests, dict) else requests
        for name, array in outputs.items():
            if isinstance(array, np.ndarray) and array.dtype.kind in "iufb":
                table = self.outputs.get(name)
                if table is None:
                    table = self.outputs[name] = OutputTable()
                table.observe(array, thin)

    def report(self, model):
        self.flush()
        return {"model": model, "version": self.version, "since": self.since,
                "requests": self.requests, "skipped": self.skipped, "errors": self.errors,
                "reference": self.reference,
                "inputs": {name: table.report() for name, table in self.inputs.items()},
                "outputs": {name: table.report() for name, table in self.outputs.items()}}


def render(models):
    """Prometheus lines summarising each served version's statistics (labels: model, input)."""
    rows = {"values": [], "nan": [], "outside": []}
    for model in models:
        stats = model.stats
        if stats is None:
            continue
        stats.flush()
        for name, table in stats.inputs.items():
            table.flush()
            labels = f'model="{_label(model.name)}",input="{_label(name)}"'
            rows["values"].append(f"edgeml_input_values_total{{{labels}}} {int(table.count.sum())}")
            rows["nan"].append(f"edgeml_input_nan_total{{{labels}}} {int(table.nan.sum())}")
            if table.bins:
                rows["outside"].append(
                    f"edgeml_input_outside_reference_total{{{labels}}} {int(table.outside.sum())}")
    return ["# HELP edgeml_input_values_total Input values summarised, all features of the input.",
            "# TYPE edgeml_input_values_total counter", *rows["values"],
            "# HELP edgeml_input_nan_total NaN input values.",
            "# TYPE edgeml_input_nan_total counter", *rows["nan"],
            "# HELP edgeml_input_outside_reference_total Input values outside the range of the "
            "model's reference sample (a sign of drift; per feature on /v2/models/NAME/stats).",
            "# TYPE edgeml_input_outside_reference_total counter", *rows["outside"]]
