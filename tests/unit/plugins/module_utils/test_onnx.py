"""The ONNX header reader (model_verify's), on models made with onnx's helpers."""

import onnx
import pytest
from onnx import TensorProto, helper

from ansible_collections.edgeml.fleet.plugins.module_utils._onnx import read_versions


def write_model(path, ir_version, opsets, big=0):
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              initializer=[helper.make_tensor("w", TensorProto.FLOAT, [big],
                                                              [0.5] * big)] if big else [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = ir_version
    onnx.save(model, str(path))


@pytest.mark.parametrize("ir_version, opsets, expected", [
    (8, [("", 17)], {"ai.onnx": 17}),
    (10, [("", 21), ("ai.onnx.ml", 3)], {"ai.onnx": 21, "ai.onnx.ml": 3}),
    (99, [("", 400)], {"ai.onnx": 400}),
])
def test_reads_ir_version_and_opsets(tmp_path, ir_version, opsets, expected):
    write_model(tmp_path / "m.onnx", ir_version, opsets)
    assert read_versions(str(tmp_path / "m.onnx")) == (ir_version, expected)


def test_large_graph_is_skipped_not_parsed(tmp_path):
    write_model(tmp_path / "m.onnx", 9, [("", 18)], big=200000)
    assert read_versions(str(tmp_path / "m.onnx")) == (9, {"ai.onnx": 18})


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x80"])
def test_garbage_is_refused(tmp_path, content):
    (tmp_path / "m.onnx").write_bytes(content)
    with pytest.raises(ValueError):
        read_versions(str(tmp_path / "m.onnx"))
