"""model_drift against a real inference server (edgeml_serve in its own process) on a store with
a model published with a reference: steady traffic, a shifted feature, too little traffic, a
version without a reference, a stale answer; and crafted statistics refused with a message."""

import http.client
import json
import os
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from module_process import run_module
from serve_process import free_port, start_server
from ansible_collections.edgeml.fleet.plugins.module_utils._drift import DriftError, compare
from ansible_collections.edgeml.fleet.plugins.module_utils._refoutputs import reference_outputs
from ansible_collections.edgeml.fleet.plugins.module_utils._refstats import reference_stats

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _version(directory, sample=None):
    """y = x * 2 over FP32 [N, 4], with the reference of sample (an .npy) in its metadata."""
    directory.mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("s", TensorProto.FLOAT, [1], [2.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    meta = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}
    if sample is not None:
        meta["reference"] = reference_stats(sample, 10, ["x"])
        meta["reference"]["outputs"], _why_not = reference_outputs(str(directory / "model.onnx"), sample)
    (directory / "edgeml-model.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store (version A with a reference, B without) and the server serving A."""
    root = tmp_path_factory.mktemp("drift")
    np.save(root / "reference.npy", np.random.default_rng(0).normal(0, 1, (5000, 4)).astype("<f4"))
    versions = root / "store" / "scale" / "versions"
    _version(versions / A, root / "reference.npy")
    _version(versions / B)
    (root / "store" / "scale" / "current").symlink_to(f"versions/{A}")
    port = free_port()
    (root / "serve.yml").write_text(f"port: {port}\nmodels:\n  - {{name: scale, path: {root}/store/scale/current}}\n")
    proc = start_server(root / "serve.yml", port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield root, port, proc
    proc.terminate()
    proc.wait(10)


def _send(port, rows):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for start in range(0, len(rows), 50):
        batch = rows[start:start + 50]
        body = json.dumps({"inputs": [{"name": "x", "shape": list(batch.shape), "datatype": "FP32",
                                       "data": batch.ravel().tolist()}]})
        conn.request("POST", "/v2/models/scale/infer", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()


def _drift(root, port, tmp_path, **extra):
    return run_module("model_drift", dict({"model": "scale", "url": f"http://127.0.0.1:{port}",
                                           "store_dir": str(root / "store")}, **extra), tmp_path)


def test_steady_then_one_shifted_feature(served, tmp_path):
    root, port, _proc = served
    little = _drift(root, port, tmp_path)
    assert little["status"] == "insufficient traffic" and little["requests"] == 0 and not little["changed"]
    rng = np.random.default_rng(1)
    _send(port, rng.normal(0, 1, (600, 4)).astype(np.float32))
    steady = _drift(root, port, tmp_path)
    assert steady["status"] == "steady" and steady["drifted"] == [], (steady["drifted"], steady.get("outputs"))
    assert steady["outputs"]["y"]["kind"] == "scores" and max(c["shift"] for c in steady["outputs"]["y"]["columns"]) < 0.2
    assert steady["max_psi"] < 0.1 and steady["requests"] == 12 and steady["version"] == f"sha256:{A}"
    assert steady["service"]["requests"] == 12 and steady["service"]["errors"] == 0
    assert 0 < steady["service"]["p50_ms"] <= steady["service"]["p95_ms"]  # the server's own timing
    shifted = rng.normal(0, 1, (3000, 4)).astype(np.float32)
    shifted[:, 2] += 1.5
    _send(port, shifted)
    drift = _drift(root, port, tmp_path)
    # y = 2x: the output's column 2 moved with the input's feature 2, the others did not
    assert drift["status"] == "drift" and drift["drifted"] == ["x/2", "output y"], drift
    assert [c["drifted"] for c in drift["outputs"]["y"]["columns"]] == [False, False, True, False]
    feature = drift["inputs"]["x"][2]
    assert feature["psi"] > 0.2 and feature["count"] == 3600 and feature["outside_reference"] > 0
    assert _drift(root, port, tmp_path, psi_threshold=50.0, output_shift_threshold=50.0)["status"] == "steady"  # the inventory's say


def test_no_reference_and_a_stale_answer(served, tmp_path):
    root, port, _proc = served
    current = root / "store" / "scale" / "current"
    os.replace(os.fspath(current), os.fspath(root / "keep"))  # B in service in the store, A still served
    current.symlink_to(f"versions/{B}")
    try:
        stale = _drift(root, port, tmp_path)
        assert stale["status"] == "stale" and "reload pending" in stale["message"]
    finally:
        current.unlink()
        os.replace(os.fspath(root / "keep"), os.fspath(current))
    missing = _drift(root, port, tmp_path, model="nothing-here")
    assert missing["failed"] and "no version in service" in missing["msg"]
    bad = _drift(root, port, tmp_path, model="../scale")
    assert bad["failed"] and "must be lower-case" in bad["msg"]


def test_an_unreachable_server_fails_clearly(served, tmp_path):
    root, _port, _proc = served
    result = _drift(root, free_port(), tmp_path, request_timeout=2)
    assert result["failed"] and "cannot read the server's statistics" in result["msg"]


# --- compare() on crafted statistics --------------------------------------------------------
REFERENCE = {"reference": {"inputs": {"x": {"features": [
    {"name": "0", "edges": [0.0, 1.0, 2.0], "counts": [5, 5], "mean": 1.0}]}}}}


def _stats(counts, edges=(0.0, 1.0, 2.0), version="sha256:v", features=None):
    feature = {"edges": list(edges), "counts": counts, "outside_reference": 0, "mean": 1.0}
    return {"version": version, "requests": 3, "inputs": {"x": {"features": [feature] if features is None else features}}}


@pytest.mark.parametrize("stats,message", [
    (_stats([1, 2, 3]), "expected 2 bin counts"),
    (_stats([1, -2]), "expected 2 bin counts"),
    (_stats([1, True]), "expected 2 bin counts"),
    (_stats("lots"), "expected 2 bin counts"),
    (_stats([1, 2], edges=(0.0, 5.0, 9.0)), "not the reference's"),
    (_stats([1, 2], features=[]), "summarises 0 features, the reference 1"),
    ("not a dict", "not a JSON object"),
])
def test_crafted_statistics_are_refused_with_a_message(stats, message):
    with pytest.raises(DriftError, match=message):
        compare("m", "sha256:v", REFERENCE, stats, 0.2, 1)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=30))
def test_any_answer_is_a_report_or_a_drift_error(stats):
    """Whatever the server (or whoever answers on its port) sends, compare() reports or says why."""
    for candidate in (stats, {"version": "sha256:v", "inputs": stats}, {"version": "sha256:v", "inputs": {"x": stats}}):
        try:
            report = compare("m", "sha256:v", REFERENCE, candidate, 0.2, 1)
        except DriftError:
            continue
        assert report["status"] in ("steady", "drift", "insufficient traffic", "stale", "no reference")


def test_a_sensor_that_starts_sending_nan_is_drift():
    stats = _stats([0, 0])
    stats["inputs"]["x"]["features"][0]["nan"] = 500
    report = compare("m", "sha256:v", REFERENCE, stats, 0.2, 100)
    assert report["status"] == "drift" and report["drifted"] == ["x/0"]


@pytest.mark.parametrize("meta,given", [
    ({}, float("nan")), ({}, 0.0), ({}, -1.0),
    ({"drift": {"psi_threshold": float("nan")}}, None),
    ({"drift": {"psi_threshold": "high"}}, None),
])
def test_a_threshold_that_would_silence_drift_is_refused(meta, given):
    from ansible_collections.edgeml.fleet.plugins.module_utils._drift import threshold_of  # pylint: disable=import-outside-toplevel
    with pytest.raises(DriftError, match="must be a number above 0"):
        threshold_of(meta, given)


@pytest.mark.parametrize("reference", [
    {"reference": {"inputs": ["x"]}},
    {"reference": {"inputs": {"x": "features"}}},
    {"reference": {"inputs": {"x": {"features": ["a"]}}}},
])
def test_a_malformed_reference_is_a_drift_error(reference):
    with pytest.raises(DriftError, match="malformed"):
        compare("m", "sha256:v", reference, _stats([1, 2]), 0.2, 1)


def test_min_count_below_one_is_refused(served, tmp_path):
    root, port, _proc = served
    result = _drift(root, port, tmp_path, min_count=0)
    assert result["failed"] and "min_count must be 1 or more" in result["msg"]


def test_an_answer_nested_too_deep_is_not_json_not_a_traceback():
    from ansible_collections.edgeml.fleet.plugins.module_utils import _v2client  # pylint: disable=import-outside-toplevel
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel

    class Deep(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # pylint: disable=invalid-name
            body = b"[" * 200_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Deep)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = _v2client.V2Client({"url": f"http://127.0.0.1:{server.server_port}", "token": None,
                                     "validate_certs": True, "ca_path": None, "request_timeout": 5})
        assert client.call("/v2/models/m/stats") == (200, None)
    finally:
        server.shutdown()
