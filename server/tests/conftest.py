"""The inference server's tests: the installed edgeml_serve package, models made with onnx helpers."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper


def make_model(directory, scale=2.0, bad=False):
    """y = x * scale over FP32 [N, 4]; a version directory named like the store names them."""
    directory.mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("s", TensorProto.FLOAT, [1], [scale])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (directory / "model.onnx").write_bytes(b"not onnx" if bad else model.SerializeToString())
    golden = {"inputs": {"x": [[1, 2, 3, 4]]}, "outputs": {"y": [[v * scale for v in (1, 2, 3, 4)]]}}
    (directory / "edgeml-model.json").write_text(json.dumps({"golden": [golden], "tolerance": 1e-6}))
    return directory


@pytest.fixture
def store(tmp_path):
    """A store with model 'scale' at version A (x2) active and version B (x3) staged."""
    base = tmp_path / "store" / "scale"
    make_model(base / "versions" / ("a" * 64), 2.0)
    make_model(base / "versions" / ("b" * 64), 3.0)
    make_model(base / "versions" / ("c" * 64), bad=True)
    (base / "current").symlink_to("versions/" + "a" * 64)
    return tmp_path / "store"


@pytest.fixture
def config_file(tmp_path, store):
    path = tmp_path / "serve.yml"
    path.write_text(f"models:\n  - name: scale\n    path: {store}/scale/current\n")
    return path


def switch(store, version):
    link = store / "scale" / "current"
    tmp = store / "scale" / ".current.tmp"
    tmp.symlink_to("versions/" + version * 64)
    tmp.rename(link)


@pytest.fixture
def rows():
    return np.arange(8, dtype=np.float32).reshape(2, 4)


def write_model(directory, graph, opsets=(("", 17),), golden=None):
    """Any ONNX graph as a store version directory (with golden inputs for the warm-up)."""
    directory.mkdir(parents=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    meta = {"golden": [{"inputs": golden}]} if golden else {}
    (directory / "edgeml-model.json").write_text(json.dumps(meta))
    return directory


def make_string_model(directory):
    """text [N] (BYTES) -> shout [N] (BYTES): each string with "!" appended (StringConcat)."""
    graph = helper.make_graph(
        [helper.make_node("StringConcat", ["text", "bang"], ["shout"])],
        "shout", [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("shout", TensorProto.STRING, ["N"])],
        [helper.make_tensor("bang", TensorProto.STRING, [1], [b"!"])])
    return write_model(directory, graph, opsets=(("", 20),), golden={"text": ["warm"]})


def make_zipmap_model(directory):
    """x [N, 2] -> label [N] (INT64) and probabilities, a sequence of maps (as skl2onnx makes)."""
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
         helper.make_node("ZipMap", ["x"], ["probabilities"], domain="ai.onnx.ml",
                          classlabels_int64s=[0, 1])],
        "classify", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_value_info("probabilities", helper.make_sequence_type_proto(
             helper.make_map_type_proto(TensorProto.INT64,
                                        helper.make_tensor_type_proto(TensorProto.FLOAT, []))))])
    return write_model(directory, graph, opsets=(("", 17), ("ai.onnx.ml", 3)))


def make_big_answer_model(directory, repeat=1024):
    """x [N, 4] -> y [N, 4 * repeat]: a small request with a large answer."""
    graph = helper.make_graph(
        [helper.make_node("Tile", ["x", "r"], ["y"])], "tile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])],
        [helper.make_tensor("r", TensorProto.INT64, [2], [1, repeat])])
    return write_model(directory, graph)


class RunningServer:
    """python -m edgeml_serve as the unit runs it, on a free loopback port, its log in a file."""

    def __init__(self, tmp_path, store, settings="", models=("scale",)):
        self.port = free_port()
        self.log = tmp_path / f"server-{self.port}.log"
        config = tmp_path / f"serve-{self.port}.yml"
        config.write_text(f"port: {self.port}\n{settings}models:\n" + "".join(
            f"  - {{name: {m}, path: {store}/{m}/current}}\n" for m in models))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "edgeml_serve", "--config", str(config)], env=env,
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.get("/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def get(self, path, timeout=5):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post(self, path, body, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def memory(self):
        """(resident MiB now, peak resident MiB) of the server process."""
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return (int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)

    def lines(self):
        return self.log.read_text().splitlines()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
