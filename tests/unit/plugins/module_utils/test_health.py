"""inference_health's run against a small fake v2 server: the wait, the golden judge, latency."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.edgeml.fleet.plugins.module_utils import _health
from ansible_collections.edgeml.fleet.plugins.module_utils._v2client import (
    ProbeError, V2Client, infer_request, zero_request)

META = {"name": "m", "versions": ["sha256:" + "a" * 64],
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]}


class FakeV2(BaseHTTPRequestHandler):
    """y = 2 * x for model m; everything else 404."""

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/v2/health/live", "/v2/health/ready", "/v2/models/m/ready"):
            self.answer(200, {})
        elif self.path == "/v2/models/m":
            self.answer(200, META)
        else:
            self.answer(404, {"error": "no such thing"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v2/models/m/infer":
            self.answer(404, {"error": "no such model"})
            return
        data = [2 * v for v in body["inputs"][0]["data"]]
        self.answer(200, {"outputs": [{"name": "y", "datatype": "FP32", "shape": body["inputs"][0]["shape"],
                                       "data": data}]})


@pytest.fixture(scope="module")
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeV2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def params(url, **overrides):
    base = {"url": url, "model": "m", "version": None, "token": None, "golden": None,
            "golden_file": None, "tolerance": None, "requests": 3, "latency_p50_ms": None,
            "latency_p95_ms": None, "timeout": 0, "request_timeout": 5, "validate_certs": True,
            "ca_path": None}
    base.update(overrides)
    return base


def test_healthy_model_with_golden_cases(url):
    result = {}
    golden = [{"inputs": {"x": [[1, 2, 3]]}, "outputs": {"y": [[2, 4, 6]]}}]
    _health.probe(params(url, golden=golden, version=META["versions"][0]), result)
    assert result["live"] and result["ready"] and result["model_ready"]
    assert result["served_version"] == META["versions"][0]
    assert result["golden"] == {"passed": True, "cases": 1, "failed": 0, "max_abs_error": 0,
                                "tolerance": 1e-4, "problems": []}
    assert result["latency"]["samples"] == 3 and result["latency"]["passed"]


def test_wrong_answers_and_slo_are_failures(url):
    result = {}
    golden = [{"inputs": {"x": [[1, 2, 3]]}, "outputs": {"y": [[2, 4, 7]]}}]
    with pytest.raises(ProbeError, match=r"golden cases answered wrong: case 1: output 'y'"):
        _health.probe(params(url, golden=golden), result)
    assert result["golden"]["failed"] == 1
    with pytest.raises(ProbeError, match="latency p95 .* is over the SLO of -1"):
        _health.probe(params(url, latency_p95_ms=-1), {})


def test_a_version_not_served_times_out(url):
    result = {}
    with pytest.raises(ProbeError, match="serves sha256:a+, expected sha256:b+"):
        _health.probe(params(url, version="sha256:" + "b" * 64), result)
    assert result["waited"] >= 0


def test_requests_from_cases_and_metadata():
    assert infer_request({"inputs": {"x": [[1, 2, 3]]}}, META) == {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    assert zero_request(META) == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}
    with pytest.raises(Exception, match=r"golden inputs \['z'\]"):
        infer_request({"inputs": {"z": [[1]]}}, META)


def test_an_unreachable_server_is_a_probe_error():
    client = V2Client(params("http://127.0.0.1:9"))
    assert not client.ok("/v2/health/live")
    with pytest.raises(ProbeError):
        client.call("/v2/health/live")


class KeptAlive(FakeV2):
    """The fake server over HTTP/1.1, counting the connections clients open."""
    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self):
        type(self).connections += 1
        super().setup()


def test_latency_is_timed_over_one_kept_alive_connection():
    """A connection per timed request would measure TCP handshakes, not the server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeptAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = V2Client({"url": f"http://127.0.0.1:{server.server_port}", "token": None,
                           "validate_certs": True, "ca_path": None, "request_timeout": 5})
        before = KeptAlive.connections
        summary = _health.check_latency(client, "m", zero_request(META), {
            "requests": 20, "latency_p50_ms": None, "latency_p95_ms": None})
        assert summary["samples"] == 20 and summary["connection"] == "keep-alive"
        assert KeptAlive.connections - before == 1
        with pytest.raises(ProbeError, match="answered HTTP 404"):
            _health.KeepAlive(client).infer("nope", zero_request(META))
    finally:
        server.shutdown()


@pytest.mark.parametrize("listed,allowed,problem", [
    (["CPUExecutionProvider"], ["CUDAExecutionProvider"], "runs on CPUExecutionProvider, expected CUDAExecutionProvider"),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider"], None),
    (["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"], None),  # CPU allowed
    (None, ["OpenVINOExecutionProvider"], "does not say which execution provider"),
    (["CPUExecutionProvider"], [], None),  # nothing asked
])
def test_the_execution_provider_in_use_is_checked(listed, allowed, problem):
    meta = dict(META, execution_providers=listed) if listed is not None else META
    result = {}
    if problem:
        with pytest.raises(ProbeError, match=problem):
            _health.check_provider("m", meta, allowed, result)
    else:
        _health.check_provider("m", meta, allowed, result)
    assert result["execution_provider"] == (listed[0] if listed else None)
    assert result.get("provider_ok", True) == (problem is None)
