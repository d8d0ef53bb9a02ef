"""The inference server's unit tests: its package from the role, models made with onnx helpers."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "roles" / "inference_runtime" / "files"))
sys.dont_write_bytecode = True  # keep __pycache__ out of the role's files


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
