"""model_publish's reference sample against a real registry (CNCF distribution): the statistics
travel in the image's edgeml-model.json to a host's store, reproducibly, and a bad sample pushes
nothing."""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modules import run_module


def _publish(registry, tag, model_dir, sample, **extra):
    return run_module("model_publish", registry.args(
        registry=registry.url, repository="models/reference-fraud", tag=tag,
        model=str(model_dir / "model.onnx"), metadata=str(model_dir / "edgeml-model.json"),
        reference_sample=str(sample), **extra))


def test_reference_statistics_reach_the_host_with_the_model(registry, sample_models, tmp_path):
    model = sample_models[("fraud-detector", "1.0")]
    metadata_before = hashlib.sha256((model / "edgeml-model.json").read_bytes()).hexdigest()
    sample = np.random.default_rng(11).normal(10, 3, (2000, 8)).astype("<f4")
    np.save(tmp_path / "validation.npy", sample)

    checked = _publish(registry, "1", model, tmp_path / "validation.npy", reference_bins=12)
    assert not checked.get("failed"), checked
    assert checked["reference"] == {"transaction": {"layout": "features", "samples": 2000, "features": 8}}
    assert checked["reference_outputs"] == ["label", "probabilities"]  # ONNX Runtime is on the controller
    again = _publish(registry, "1", model, tmp_path / "validation.npy", reference_bins=12)
    assert again["digest"] == checked["digest"] and not again["changed"]  # reproducible
    assert hashlib.sha256((model / "edgeml-model.json").read_bytes()).hexdigest() == metadata_before

    synced = run_module("model_sync", registry.args(
        registries=[registry.url], store_dir=str(tmp_path / "store"), name="reference-fraud",
        ref="models/reference-fraud:1", signatures=False))
    assert not synced.get("failed"), synced
    meta = json.loads((tmp_path / "store" / "reference-fraud" / "current" / "edgeml-model.json").read_text())
    reference = meta["reference"]
    assert reference["source"] == "validation.npy" and reference["bins"] == 12
    features = reference["inputs"]["transaction"]["features"]
    assert len(features) == 8 and all(len(f["counts"]) == 12 for f in features)
    for column, feature in enumerate(features):
        assert np.isclose(feature["mean"], sample[:, column].astype(np.float64).mean(), rtol=1e-5)
        assert feature["min"] == float(sample[:, column].min())
    assert meta["golden"] == json.loads((model / "edgeml-model.json").read_text())["golden"]
    # the model's outputs on the same sample: label counts and the two probability columns
    session = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"transaction": sample})
    outputs = reference["outputs"]
    assert outputs["label"]["counts"] == {str(k): int((labels == k).sum()) for k in np.unique(labels)}
    assert [c["mean"] for c in outputs["probabilities"]["columns"]] == pytest.approx(
        probabilities.astype(np.float64).mean(axis=0).tolist(), rel=1e-4)


def test_a_bad_sample_fails_clearly_and_pushes_nothing(registry, sample_models, tmp_path):
    model = sample_models[("fraud-detector", "1.0")]
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '|O'}" + b"\0" * 8)
    result = _publish(registry, "bad", model, tmp_path / "bad.npy")
    assert result.get("failed") and "reference_sample" in result["msg"] and "bad.npy" in result["msg"]
    np.savez(tmp_path / "wrong-input.npz", arr_0=np.zeros((2, 8), "<f4"))  # arr_0: not an input
    result = _publish(registry, "bad", model, tmp_path / "wrong-input.npz")
    assert result.get("failed") and "'arr_0' is not an input of the model (transaction)" in result["msg"]
    lookup = run_module("model_sync", registry.args(
        registries=[registry.url], store_dir=str(tmp_path / "store"), name="reference-fraud",
        ref="models/reference-fraud:bad", signatures=False), check_mode=True)
    assert lookup.get("failed") and "bad" in lookup["msg"]  # the tag was never pushed
    assert not (Path(tmp_path) / "store" / "reference-fraud").exists()


def test_a_sample_without_metadata_is_refused(registry, sample_models, tmp_path):
    model = sample_models[("fraud-detector", "1.0")]
    np.save(tmp_path / "s.npy", np.zeros((2, 8), "<f4"))
    result = run_module("model_publish", registry.args(
        registry=registry.url, repository="models/reference-fraud", tag="nometa",
        model=str(model / "model.onnx"), reference_sample=str(tmp_path / "s.npy")))
    assert result.get("failed") and "reference_sample needs metadata" in result["msg"]
