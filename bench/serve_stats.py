"""Benchmark: what the inference server's running statistics cost on the serving path.

Two edgeml_serve processes on loopback serve the same two lab models, each with a reference in
its edgeml-model.json (the statistics of a synthetic sample, as model_publish writes them), one
with statistics on and one with them off (serve.yml `statistics: false`). In the same run, with
rounds interleaved: p50/p99 latency of one request at a time, and throughput with 4 concurrent
clients (median of the rounds). Goal: statistics cost <= 5 % of throughput.

Then memory: one version's statistics fed 1,000,000 fraud requests in-process, traced with
tracemalloc at checkpoints: it must stay flat.

    make lab-up && .venv/bin/python bench/serve_stats.py [--requests 2000] [--seconds 5] [--million 1000000]
"""

import argparse
import functools
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "integration"), str(ROOT), str(ROOT / ".collections")]
from inference import http_caller, http_latency, percentile, request_body, sample, throughput  # noqa: E402
from registries import free_port  # noqa: E402
from ansible_collections.edgeml.fleet.plugins.module_utils._refstats import reference_stats  # noqa: E402
from edgeml_serve.stats import VersionStats  # noqa: E402

MODELS = {"fraud": False, "cnn": True}  # name -> binary tensor body (as tritonclient sends images)


def with_reference(name, work):
    """A copy of the lab model's version directory whose metadata carries a reference."""
    directory, inputs = sample(name)
    copy = work / name / ("0" * 64)
    shutil.copytree(directory, copy)
    (input_name, golden), = inputs.items()
    rng = np.random.default_rng(3)
    shape = (500,) + golden.shape[1:]
    np.save(work / f"{name}.npy", (golden + rng.normal(0, 1, shape)).astype(np.float32))
    meta = json.loads((copy / "edgeml-model.json").read_text())
    meta["reference"] = reference_stats(work / f"{name}.npy", 10, [input_name])
    (copy / "edgeml-model.json").write_text(json.dumps(meta))
    return copy, inputs


def start(work, label, port, models, on):
    config = work / f"{label}.yml"
    config.write_text(f"port: {port}\nthreads: 2\nstatistics: {'true' if on else 'false'}\nmodels:\n"
                      + "".join(f"  - {{name: {n}, path: {d}}}\n" for n, d in models.items()))
    proc = subprocess.Popen([sys.executable, "-m", "edgeml_serve", "--config", str(config)])  # pylint: disable=consider-using-with
    for _attempt in range(200):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"{label}: the server did not become ready")


def memory(requests):
    """Traced bytes held after each checkpoint of requests fed to one version's statistics."""
    directory, inputs = with_reference("fraud", Path(tempfile.mkdtemp(prefix="edgeml-bench-")))
    meta = json.loads((directory / "edgeml-model.json").read_text())
    specs = [{"name": k, "datatype": "FP32", "shape": [-1, v.shape[1]]} for k, v in inputs.items()]
    stats = VersionStats("v", specs, meta["reference"])
    rng = np.random.default_rng(9)
    rows = [{k: (v + rng.normal(0, 1, v.shape)).astype(np.float32) for k, v in inputs.items()} for _row in range(512)]
    outputs = [{"label": np.array([i % 2]), "probabilities": np.array([[0.3, 0.7]], np.float32)} for i in range(512)]
    checkpoints = sorted({requests // 100, requests // 10, requests // 2, requests})
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held, started, done = [], time.perf_counter(), 0
    for mark in checkpoints:
        while done < mark:
            stats.observe(rows[done % 512], outputs[done % 512])
            done += 1
        stats.report("fraud")
        held.append((mark, tracemalloc.get_traced_memory()[0] - base))
    seconds = time.perf_counter() - started
    tracemalloc.stop()
    return held, seconds / requests


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--million", type=int, default=1_000_000, help="requests for the memory run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeml-bench-"))
    models, feeds = {}, {}
    for name in MODELS:
        models[name], feeds[name] = with_reference(name, work)
    ports = {"on": free_port(), "off": free_port()}
    servers = {label: start(work, label, ports[label], models, label == "on") for label in ports}
    rows = []
    try:
        for name, binary in MODELS.items():
            body, headers = request_body(feeds[name], binary)
            count = args.requests if name == "fraud" else max(200, args.requests // 5)
            latency, rps = {"on": [], "off": []}, {"on": [], "off": []}
            for _round in range(args.rounds):  # interleaved, medians reported
                for label in ("off", "on"):
                    latency[label] += http_latency(ports[label], name, body, headers, count // args.rounds)
                    rps[label].append(throughput(functools.partial(
                        http_caller, ports[label], name, body, headers), 4, args.seconds))
            rows.append((name, {k: (statistics.median(v), percentile(v, 99)) for k, v in latency.items()},
                         {k: statistics.median(v) for k, v in rps.items()}))
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"edgeml_serve with running statistics on vs off (same models, each with a reference of "
          f"10 bins), loopback, keep-alive; latency: one request at a time; throughput: 4 clients, "
          f"median of {args.rounds} interleaved rounds of {args.seconds:.0f} s")
    print("| model | p50 off ms | p50 on ms | p99 off ms | p99 on ms | req/s off | req/s on | "
          "throughput cost | goal <= 5 % |")
    print("|-------|-----------:|----------:|-----------:|----------:|----------:|---------:|"
          "----------------:|------------:|")
    for name, latency, rps in rows:
        cost = 1 - rps["on"] / rps["off"]
        print(f"| {name:<5} | {latency['off'][0] * 1e3:>10.3f} | {latency['on'][0] * 1e3:>9.3f} | "
              f"{latency['off'][1] * 1e3:>10.3f} | {latency['on'][1] * 1e3:>9.3f} | "
              f"{rps['off']:>9.0f} | {rps['on']:>8.0f} | {cost:>15.1%} | "
              f"{'yes' if cost <= 0.05 else 'no':>11} |")
    held, per_request = memory(args.million)
    print()
    print(f"Memory of one version's statistics (fraud model, reference of 10 bins, label and score "
          f"outputs), fed in-process; {per_request * 1e6:.1f} us per request")
    print("| requests | bytes held (tracemalloc) |")
    print("|---------:|-------------------------:|")
    for mark, size in held:
        print(f"| {mark:>8} | {size:>24} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
