"""model_shadow against a real inference server (edgeml_serve in its own process) running a
candidate beside the serving version: one that agrees passes, one that disagrees fails judged,
too little traffic fails not judged, a candidate that does not load fails at once; and crafted
shadow reports are refused with a message."""

import http.client
import json
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from module_process import run_module
from serve_process import free_port, start_server
from ansible_collections.edgeml.fleet.plugins.module_utils._shadow import ShadowError, figures, judge

A, B, C, D = "a" * 64, "b" * 64, "c" * 64, "d" * 64


def _version(directory, scale):
    """y = x * scale over FP32 [N, 4]; scale None: a file that is not ONNX."""
    directory.mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("s", TensorProto.FLOAT, [1], [scale or 1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (directory / "model.onnx").write_bytes(model.SerializeToString() if scale else b"not onnx")
    (directory / "edgeml-model.json").write_text("{}")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Version A (x2) serves; B (x2 too) agrees with it, C (x3) does not, D is not a model."""
    root = tmp_path_factory.mktemp("shadow")
    versions = root / "store" / "scale" / "versions"
    for name, scale in ((A, 2.0), (B, 2.0), (C, 3.0), (D, None)):
        _version(versions / name, scale)
    (root / "store" / "scale" / "current").symlink_to(f"versions/{A}")
    return root


@pytest.fixture
def serve(store, tmp_path):
    """serve(candidate): a server serving A with that candidate as its shadow; its port."""
    procs = []

    def start(candidate):
        port = free_port()
        config = tmp_path / f"serve-{port}.yml"
        config.write_text(f"port: {port}\nmodels:\n  - name: scale\n    path: {store}/store/scale/current\n"
                          f"    shadow: {store}/store/scale/versions/{candidate}\n")
        procs.append(start_server(config, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return port
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def _send(port, count):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    for _request in range(count):
        conn.request("POST", "/v2/models/scale/infer", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()


def _judge(port, tmp_path, **extra):
    args = {"model": "scale", "url": f"http://127.0.0.1:{port}", "candidate": f"sha256:{B}",
            "serving": f"sha256:{A}", "min_requests": 20, "timeout": 10, "poll_interval": 0.2}
    return run_module("model_shadow", dict(args, **extra), tmp_path)


def test_an_agreeing_candidate_passes(serve, tmp_path):
    port = serve(B)
    _send(port, 40)
    result = _judge(port, tmp_path, latency_p95_ms=1000.0)
    assert result["passed"] and result["judged"] and not result.get("failed"), result
    assert result["agreement_percent"] == 100.0 and result["requests"] + result["skipped"] == 40
    assert not result["changed"] and "agreed on 100.0 %" in result["message"]
    over = _judge(port, tmp_path, latency_p95_ms=0.000001)  # a budget nothing meets
    assert over["failed"] and over["judged"] and "over the budget" in over["msg"]


def test_a_disagreeing_candidate_fails_judged(serve, tmp_path):
    port = serve(C)
    _send(port, 40)
    result = _judge(port, tmp_path, candidate=f"sha256:{C}")
    assert result["failed"] and result["judged"] and not result["passed"]
    assert "agreed on 0.0 %" in result["msg"] and "answers differ" in result["msg"]


def test_too_little_traffic_a_wrong_candidate_and_a_broken_one(serve, tmp_path):
    port = serve(B)
    _send(port, 3)
    little = _judge(port, tmp_path, timeout=1)
    assert little["failed"] and not little["judged"] and "too little traffic" in little["msg"]
    other = _judge(port, tmp_path, candidate=f"sha256:{C}", timeout=1)  # not the one it runs
    assert other["failed"] and not other["judged"] and "candidate_version" in other["msg"]
    broken = serve(D)
    result = _judge(broken, tmp_path, candidate=f"sha256:{D}", timeout=30)
    assert result["failed"] and "loading" in result["msg"] and "HTTP 404" in result["msg"]
    gone = _judge(free_port(), tmp_path, request_timeout=2)
    assert gone["failed"] and "cannot read the server's shadow figures" in gone["msg"]


@pytest.mark.parametrize("extra, message", [
    ({"min_requests": 0}, "min_requests must be 1 or more"),
    ({"min_agreement": 101.0}, "min_agreement between 0 and 100"),
    ({"latency_p95_ms": float("nan")}, "latency_p95_ms a number above 0"),
    ({"model": "../scale"}, "must be lower-case"),
])
def test_bad_arguments_are_refused(tmp_path, extra, message):
    result = _judge(free_port(), tmp_path, **extra)
    assert result["failed"] and message in result["msg"]


# --- figures() and judge() on crafted reports ----------------------------------------------
GOOD = {"candidate_version": "sha256:c", "serving_version": "sha256:s", "requests": 10, "agreed": 9,
        "errors": 0, "skipped": 1, "candidate_latency_ms": {"p50": 1.0, "p95": 2.0},
        "serving_latency_ms": {"p50": 1.0, "p95": 1.5}, "last_disagreement": "answers differ"}


@pytest.mark.parametrize("change, message", [
    ({"agreed": 11}, "says 11 of 10 agreed"),
    ({"requests": -1}, "no usable 'requests'"),
    ({"agreed": True}, "no usable 'agreed'"),
    ({"errors": "0"}, "no usable 'errors'"),
    ({"candidate_latency_ms": {"p95": float("inf")}}, "no usable 'candidate_latency_ms' p95"),
    ({"candidate_version": "sha256:other"}, "where candidate_version sha256:c was expected"),
])
def test_a_crafted_report_is_refused(change, message):
    with pytest.raises(ShadowError, match=message):
        figures(dict(GOOD, **change), "scale", "sha256:c", "sha256:s")


def test_the_verdict():
    found = figures(GOOD, "scale", "sha256:c", "sha256:s")
    assert judge(found, 20, 90)[0] is None  # 10 of 20 requests: not yet
    assert judge(found, 10, 90)[0] is True
    passed, message = judge(found, 10, 95)
    assert passed is False and "agreed on 90.0 % of 10 requests, 95 % needed" in message
    assert judge(found, 10, 90, latency_p95_ms=1.0)[0] is False


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(sorted(GOOD) + ["x"]), inner, max_size=6), max_leaves=20))
def test_any_answer_is_figures_or_a_shadow_error(report):
    """Whatever the server answers, the gate judges numbers it checked, or says why not."""
    try:
        found = figures(report, "scale", None, None)
    except ShadowError:
        return
    assert 0 <= found["agreed"] <= found["requests"]
    passed, _message = judge(found, 1, 50.0, 10.0)
    assert passed in (None, True, False)


def test_a_server_that_dribbles_its_answer_cannot_hold_the_gate_past_its_timeout(tmp_path):
    """One byte a second: each read is within request_timeout, the whole answer never comes."""
    import socket  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def dribble():
        conn, _addr = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b" ")
            except OSError:
                return
            time.sleep(1)
    threading.Thread(target=dribble, daemon=True).start()
    started = time.monotonic()
    result = _judge(listener.getsockname()[1], tmp_path, timeout=2, request_timeout=2)
    stop.set()
    assert result["failed"] and "did not arrive within the timeout of 2 s" in result["msg"], result
    assert time.monotonic() - started < 15


def test_counts_beyond_what_a_server_can_have_counted_are_refused():
    with pytest.raises(ShadowError, match="no usable 'requests'"):
        figures(dict(GOOD, requests=10 ** 400, agreed=1), "scale", "sha256:c", "sha256:s")


def test_figures_of_another_judging_are_not_taken():
    """Two deploys overlapping, or a reload that did not apply: the figures must be this judging's."""
    with pytest.raises(ShadowError, match="another deploy"):
        figures(dict(GOOD, id="2026-11-27T01:00:00Z"), "scale", "sha256:c", "sha256:s", "2026-11-27T02:00:00Z")
    assert figures(dict(GOOD, id="run-2"), "scale", "sha256:c", "sha256:s", "run-2")["requests"] == GOOD["requests"]
