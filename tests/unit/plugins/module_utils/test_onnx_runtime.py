"""model_verify's ONNX Runtime engine: providers, descriptions, feeds, golden and latency runs."""

import onnx
import pytest
from onnx import TensorProto, helper

from ansible_collections.edgeml.fleet.plugins.module_utils import _onnx_runtime as engine
from ansible_collections.edgeml.fleet.plugins.module_utils._golden import GoldenError


@pytest.mark.parametrize("wanted,available,chosen", [
    (["auto"], ["CUDAExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["auto"], ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
     ["OpenVINOExecutionProvider", "CPUExecutionProvider"]),
    ([], ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["CUDAExecutionProvider"], ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["OpenVINOExecutionProvider"], ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
     ["OpenVINOExecutionProvider", "CPUExecutionProvider"]),
])
def test_provider_choice_falls_back_to_cpu(wanted, available, chosen):
    assert engine.choose_providers(wanted, available) == chosen


@pytest.fixture
def session(tmp_path):
    """y = x * 2 on FP32 [batch, 3]."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
                              initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    return engine.open_session(str(tmp_path / "m.onnx"), ["auto"])


def test_describe_golden_and_latency(session):
    inputs = engine.describe(session.get_inputs())
    assert inputs == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert engine.describe(session.get_outputs())[0]["name"] == "y"
    cases = [{"inputs": {"x": [[1, 2, 3]]}, "outputs": {"y": [[2, 4, 6]]}},
             {"inputs": {"x": [[1, 1, 1]]}, "outputs": {"y": [[2, 2, 3]]}}]
    result = engine.check_golden(session, inputs, cases, 1e-4)
    assert (result["cases"], result["failed"], result["max_abs_error"]) == (2, 1, 1.0)
    assert result["problems"][0].startswith("case 2: output 'y': 1 of 3 values off")
    feeds = engine.zero_feeds(inputs)
    assert feeds["x"].shape == (1, 3) and str(feeds["x"].dtype) == "float32"
    latency = engine.check_latency(session, feeds, warmup=1, runs=3, budget=None)
    assert latency["passed"] and latency["samples"] == 3 and latency["budget_ms"] is None
    assert not engine.check_latency(session, feeds, warmup=0, runs=1, budget=-1)["passed"]


def test_golden_inputs_the_model_lacks_are_refused(session):
    with pytest.raises(GoldenError, match=r"golden inputs \['z'\] are not inputs"):
        engine.feeds_for({"inputs": {"z": [[1]]}}, engine.describe(session.get_inputs()))
