"""Benchmark: KServe v2 inference over HTTP against the same model called in-process.

For both sample models, in the same run: p50/p99 latency of one request at a time (the
fraud model with a JSON body, the CNN with the binary tensor extension, as tritonclient sends
it), and throughput with 4 concurrent clients; the same model run with onnxruntime in this
process, 1 and 4 threads, is the reference. The server is edgeml_serve as the role deploys it,
started on loopback. Goals: HTTP overhead <= 1 ms at p50 for the fraud model; CNN throughput
with 4 clients >= 80 % of in-process.

    make lab-up && .venv/bin/python bench/inference.py [--requests 2000] [--seconds 5]
"""

import argparse
import functools
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "lib"), str(ROOT)]
from lab.models import read_samples  # noqa: E402
from serve_process import free_port, start_server  # noqa: E402

MODELS = {"fraud": ("fraud-detector", "1.0"), "cnn": ("image-classifier", "1.0")}


def sample(name):
    directory = read_samples(ROOT / "lab" / ".state")[MODELS[name]]
    meta = json.loads((directory / "edgeml-model.json").read_text())
    inputs = {k: np.array(v, dtype=np.float32) for k, v in meta["golden"][0]["inputs"].items()}
    return directory, inputs


def request_body(inputs, binary):
    if not binary:
        body = {"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32",
                            "data": v.ravel().tolist()} for k, v in inputs.items()]}
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    header = json.dumps({"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": v.nbytes}}
                                    for k, v in inputs.items()],
                         "parameters": {"binary_data_output": True}}).encode()
    body = header + b"".join(v.tobytes() for v in inputs.values())
    return body, {"Inference-Header-Content-Length": str(len(header)),
                  "Content-Type": "application/octet-stream"}


def percentile(samples, pct):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def http_latency(port, model, body, headers, count):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    for index in range(count + 50):
        start = time.perf_counter()
        conn.request("POST", f"/v2/models/{model}/infer", body, headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        if index >= 50:  # warm-up
            times.append(time.perf_counter() - start)
    conn.close()
    return times


def inproc_latency(session, inputs, count):
    times = []
    for index in range(count + 50):
        start = time.perf_counter()
        session.run(None, inputs)
        if index >= 50:
            times.append(time.perf_counter() - start)
    return times


def http_caller(port, model, body, headers):
    """A client of its own (one keep-alive connection) that sends one request per call."""
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def call():
        conn.request("POST", f"/v2/models/{model}/infer", body, headers)
        conn.getresponse().read()
    return call


def throughput(worker_factory, workers, seconds):
    stop, counts = threading.Event(), [0] * workers

    def run(slot):
        work = worker_factory()
        while not stop.is_set():
            work()
            counts[slot] += 1
    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--threads", type=int, default=2, help="server worker threads")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgeml-bench-"))
    port = free_port()
    config = tmp / "serve.yml"
    config.write_text(f"port: {port}\nthreads: {args.threads}\nmodels:\n" + "".join(
        f"  - {{name: {name}, path: {sample(name)[0]}}}\n" for name in MODELS))
    server = start_server(config, port)
    try:
        rows = []
        for name, binary in (("fraud", False), ("cnn", True)):
            directory, inputs = sample(name)
            session = ort.InferenceSession(str(directory / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
            body, headers = request_body(inputs, binary)
            count = args.requests if name == "fraud" else max(200, args.requests // 5)
            inproc = inproc_latency(session, inputs, count)
            over_http = http_latency(port, name, body, headers, count)

            http_worker = functools.partial(http_caller, port, name, body, headers)
            inproc_worker = functools.partial(lambda sess, feeds: lambda: sess.run(None, feeds),
                                              session, inputs)

            inproc_rps, http_rps = [], []
            for _round in range(args.rounds):  # interleaved rounds, medians reported
                inproc_rps.append(throughput(inproc_worker, 4, args.seconds))
                http_rps.append(throughput(http_worker, 4, args.seconds))
            rows.append((name, "json" if not binary else "binary", inproc, over_http,
                         statistics.median(inproc_rps), statistics.median(http_rps)))
    finally:
        server.terminate()
        server.wait(10)
    print(f"KServe v2 infer over HTTP (edgeml_serve, loopback, keep-alive) vs onnxruntime "
          f"in-process; latency: one request at a time; throughput: 4 concurrent clients, "
          f"median of {args.rounds} rounds of {args.seconds:.0f} s; server threads {args.threads}")
    print("| model | body   | p50 in-proc ms | p50 HTTP ms | HTTP overhead p50 ms | p99 in-proc ms "
          "| p99 HTTP ms | in-proc req/s (4) | HTTP req/s (4) | HTTP / in-proc |")
    print("|-------|--------|---------------:|------------:|---------------------:|---------------:"
          "|------------:|------------------:|---------------:|---------------:|")
    for name, body_kind, inproc, over_http, inproc_rps, http_rps in rows:
        p50_in, p50_http = statistics.median(inproc) * 1e3, statistics.median(over_http) * 1e3
        print(f"| {name:<5} | {body_kind:<6} | {p50_in:>14.3f} | {p50_http:>11.3f} | "
              f"{p50_http - p50_in:>20.3f} | {percentile(inproc, 99) * 1e3:>14.3f} | "
              f"{percentile(over_http, 99) * 1e3:>11.3f} | {inproc_rps:>17.0f} | "
              f"{http_rps:>14.0f} | {http_rps / inproc_rps:>13.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
