"""Prometheus metrics, written in the text exposition format (no client library needed)."""

import threading


def _label(value):
    """A label value as the text format writes it (backslash, double quote and newline escaped)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _quantile(hist, fraction):
    """The fraction-quantile in milliseconds of a histogram [cumulative bucket counts..., sum,
    count], or None without observations or beyond the last bucket."""
    total = hist[-1]
    if not total:
        return None
    rank, below, lower = fraction * total, 0, 0.0
    for bound, cumulative in zip(BUCKETS, hist):
        if cumulative >= rank:
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return round((lower + (bound - lower) * share) * 1000.0, 3)
        below, lower = cumulative, bound
    return None


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests = {}  # model -> count
        self.errors = {}  # (model, code) -> count
        self.latency = {}  # model -> [bucket counts..., sum, count]
        self.load_seconds = {}  # model -> seconds
        self.load_failures = {}  # model -> count
        self.served = {}  # model -> digest
        self.events = {}  # kind -> count (connections cut off, requests refused, clients gone)

    def observe(self, model, seconds):
        with self._lock:
            self.requests[model] = self.requests.get(model, 0) + 1
            hist = self.latency.setdefault(model, [0] * len(BUCKETS) + [0.0, 0])
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
            hist[-2] += seconds
            hist[-1] += 1

    def error(self, model, code):
        with self._lock:
            self.errors[(model, code)] = self.errors.get((model, code), 0) + 1

    def event(self, kind):
        with self._lock:
            self.events[kind] = self.events.get(kind, 0) + 1

    def loaded(self, model, digest, seconds):
        with self._lock:
            self.served[model] = digest
            self.load_seconds[model] = seconds

    def load_failed(self, model):
        with self._lock:
            self.load_failures[model] = self.load_failures.get(model, 0) + 1

    def summary(self, model):
        """A model's answered requests, its errors by status and the p50/p95 of its answer time
        (from the histogram, interpolated within a bucket as Prometheus does), since the server
        started: what the drift report shows next to the drift."""
        with self._lock:
            hist = list(self.latency.get(model) or [0] * len(BUCKETS) + [0.0, 0])
            errors = {str(code): n for (name, code), n in self.errors.items() if name == model}
            requests = self.requests.get(model, 0)
        return {"requests": requests, "errors": dict(sorted(errors.items())),
                "latency_ms": {"p50": _quantile(hist, 0.5), "p95": _quantile(hist, 0.95)}}

    def render(self):
        out = []
        with self._lock:
            out += ["# HELP edgeml_inference_requests_total Inference requests answered.",
                    "# TYPE edgeml_inference_requests_total counter"]
            out += [f'edgeml_inference_requests_total{{model="{_label(m)}"}} {n}'
                    for m, n in sorted(self.requests.items())]
            out += ["# HELP edgeml_inference_errors_total Inference requests that failed, by code.",
                    "# TYPE edgeml_inference_errors_total counter"]
            out += [f'edgeml_inference_errors_total{{model="{_label(m)}",code="{c}"}} {n}'
                    for (m, c), n in sorted(self.errors.items())]
            out += ["# HELP edgeml_inference_latency_seconds Time to answer an inference request.",
                    "# TYPE edgeml_inference_latency_seconds histogram"]
            for model, hist in sorted(self.latency.items()):
                for bound, count in zip(BUCKETS, hist):
                    out.append(f'edgeml_inference_latency_seconds_bucket{{model="{_label(model)}",le="{bound}"}} {count}')
                out.append(f'edgeml_inference_latency_seconds_bucket{{model="{_label(model)}",le="+Inf"}} {hist[-1]}')
                out.append(f'edgeml_inference_latency_seconds_sum{{model="{_label(model)}"}} {hist[-2]:.6f}')
                out.append(f'edgeml_inference_latency_seconds_count{{model="{_label(model)}"}} {hist[-1]}')
            out += ["# HELP edgeml_model_load_seconds Time the served version took to load and warm up.",
                    "# TYPE edgeml_model_load_seconds gauge"]
            out += [f'edgeml_model_load_seconds{{model="{_label(m)}"}} {s:.6f}'
                    for m, s in sorted(self.load_seconds.items())]
            out += ["# HELP edgeml_model_load_failures_total Versions that failed to load (the old one kept serving).",
                    "# TYPE edgeml_model_load_failures_total counter"]
            out += [f'edgeml_model_load_failures_total{{model="{_label(m)}"}} {n}'
                    for m, n in sorted(self.load_failures.items())]
            out += ["# HELP edgeml_model_served_info The version (manifest digest) each model serves.",
                    "# TYPE edgeml_model_served_info gauge"]
            out += [f'edgeml_model_served_info{{model="{_label(m)}",digest="{_label(d)}"}} 1'
                    for m, d in sorted(self.served.items())]
            out += ["# HELP edgeml_server_events_total Connections cut off (header_timeout, "
                    "body_timeout, write_timeout, headers_too_large), requests refused (busy) and "
                    "clients that went away (client_gone).",
                    "# TYPE edgeml_server_events_total counter"]
            out += [f'edgeml_server_events_total{{kind="{k}"}} {n}'
                    for k, n in sorted(self.events.items())]
        return "\n".join(out) + "\n"
