"""The output distribution on the reference sample (ONNX Runtime on the publishing side), and its
comparison with the server's live output statistics (labels by PSI, scores by mean shift)."""

import builtins
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from ansible_collections.edgeml.fleet.plugins.module_utils._drift import DriftError, compare_outputs
from ansible_collections.edgeml.fleet.plugins.module_utils._refoutputs import reference_outputs
from ansible_collections.edgeml.fleet.plugins.module_utils._refstats import SampleError


def _classifier(path):
    """x [N, 3] -> probabilities = softmax(x) [N, 3], label = argmax(x) [N] (INT64)."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["probabilities"], axis=1),
         helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)], "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_labels_and_scores_on_the_sample_are_what_numpy_says(tmp_path):
    model = _classifier(tmp_path / "model.onnx")
    sample = np.random.default_rng(3).normal(0, 1, (1000, 3)).astype(np.float32)
    sample[:, 2] += 1.0  # class 2 the most frequent
    np.save(tmp_path / "sample.npy", sample)
    outputs, why_not = reference_outputs(model, str(tmp_path / "sample.npy"))
    assert why_not is None and set(outputs) == {"label", "probabilities"}
    labels = np.argmax(sample, axis=1)
    assert outputs["label"] == {"kind": "labels", "samples": 1000, "other": 0,
                                "counts": {str(k): int((labels == k).sum()) for k in range(3)}}
    scores = np.exp(sample) / np.exp(sample).sum(axis=1, keepdims=True)
    for column, entry in enumerate(outputs["probabilities"]["columns"]):
        assert entry["count"] == 1000 and entry["mean"] == pytest.approx(scores[:, column].mean(), rel=1e-4)
        assert entry["std"] == pytest.approx(scores[:, column].std(), rel=1e-4)
    json.dumps(outputs, allow_nan=False)  # what edgeml-model.json can carry


def test_without_onnx_runtime_there_are_no_outputs_and_a_reason(tmp_path, monkeypatch):
    model = _classifier(tmp_path / "model.onnx")
    np.save(tmp_path / "sample.npy", np.zeros((4, 3), np.float32))
    real_import = builtins.__import__

    def without_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime here")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", without_ort)
    outputs, why_not = reference_outputs(model, str(tmp_path / "sample.npy"))
    assert outputs is None and "ONNX Runtime" in why_not


def test_a_sample_that_does_not_fit_the_model_says_so(tmp_path):
    model = _classifier(tmp_path / "model.onnx")
    np.save(tmp_path / "wide.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(SampleError, match="running the model on the reference sample"):
        reference_outputs(model, str(tmp_path / "wide.npy"))
    np.savez(tmp_path / "other.npz", y=np.zeros((4, 3), np.float32))
    with pytest.raises(SampleError, match="not an input of the model"):
        reference_outputs(model, str(tmp_path / "other.npz"))
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(SampleError, match="cannot load the model"):
        reference_outputs(str(tmp_path / "bad.onnx"), str(tmp_path / "wide.npy"))


REFERENCE = {"label": {"kind": "labels", "counts": {"0": 900, "1": 100}, "other": 0},
             "score": {"kind": "scores", "columns": [{"count": 1000, "mean": 0.2, "std": 0.1}]}}


def _live(zeros, ones, mean, count=1000):
    return {"label": {"kind": "labels", "counts": {"0": zeros, "1": ones}, "other": 0},
            "score": {"kind": "scores", "features": [{"count": count, "mean": mean, "std": 0.1}]}}


def test_labels_and_scores_drift_apart():
    steady, drifted = compare_outputs("m", REFERENCE, _live(880, 120, 0.21), 0.2, 100, 0.5)
    assert drifted == [] and steady["label"]["psi"] < 0.05 and steady["score"]["columns"][0]["shift"] < 0.2
    moved, drifted = compare_outputs("m", REFERENCE, _live(500, 500, 0.2), 0.2, 100, 0.5)
    assert drifted == ["output label"] and moved["label"]["psi"] > 0.2
    _rows, drifted = compare_outputs("m", REFERENCE, _live(900, 100, 0.35), 0.2, 100, 0.5)
    assert drifted == ["output score"]  # 1.5 reference stds
    little, drifted = compare_outputs("m", REFERENCE, _live(5, 50, 0.9, count=55), 0.2, 100, 0.5)
    assert drifted == [] and little["label"]["psi"] is None and little["score"]["columns"][0]["shift"] is None
    missing, drifted = compare_outputs("m", REFERENCE, {}, 0.2, 100, 0.5)  # no answers summarised yet
    assert drifted == [] and missing["label"]["count"] == 0


@pytest.mark.parametrize("live, message", [
    ({"label": {"kind": "labels", "counts": {"0": -1}, "other": 0}}, "bin counts"),
    ({"label": {"kind": "labels", "counts": {str(i): 1 for i in range(300)}}}, "at most 256"),
    ({"score": {"kind": "scores", "features": []}}, "other score columns"),
    ({"score": {"kind": "scores", "features": [{"count": 500, "mean": float("nan")}]}}, "finite number"),
    ({"score": {"kind": "scores", "features": [{"count": True, "mean": 0.2}]}}, "bin counts"),
])
def test_crafted_live_outputs_are_refused(live, message):
    with pytest.raises(DriftError, match=message):
        compare_outputs("m", REFERENCE, live, 0.2, 100, 0.5)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-5, 2000) | st.floats() | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["label", "score", "kind", "counts", "other", "features", "count",
                                         "mean", "0", "1", "labels", "scores"]), inner, max_size=5),
                    max_leaves=25))
def test_any_live_outputs_give_a_verdict_or_a_drift_error(live):
    try:
        rows, drifted = compare_outputs("m", REFERENCE, live, 0.2, 10, 0.5)
    except DriftError:
        return
    assert set(rows) == set(REFERENCE) and set(drifted) <= {"output label", "output score"}
