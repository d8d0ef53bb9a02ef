"""Sample models, made at lab start: a fraud classifier (scikit-learn -> ONNX) and a small CNN.

Each model directory holds ``model.onnx`` and ``edgeml-model.json`` (signature, golden vectors
computed with onnxruntime, tolerance, latency budget). Everything is seeded, so the same
recipe gives the same files.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

FRAUD_FEATURES = ("amount", "hour", "merchant_risk", "distance_km", "tx_last_24h",
                  "foreign", "card_age_days", "amount_vs_avg")
ONNX_TO_V2 = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(double)": "FP64",
              "tensor(int32)": "INT32", "tensor(string)": "BYTES", "tensor(bool)": "BOOL"}


def synthetic_transactions(n, seed):
    """Card transactions with a fraud label that depends on a few risky patterns."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.lognormal(3.5, 1.2, n),          # amount
        rng.integers(0, 24, n),              # hour
        rng.beta(2, 5, n),                   # merchant_risk
        rng.exponential(20, n),              # distance_km
        rng.poisson(3, n),                   # tx_last_24h
        rng.random(n) < 0.1,                 # foreign
        rng.integers(1, 3000, n),            # card_age_days
        rng.lognormal(0, 0.6, n),            # amount_vs_avg
    ]).astype(np.float32)
    score = (0.8 * (x[:, 1] < 5) + 2.5 * x[:, 2] + 0.02 * x[:, 3] + 0.25 * x[:, 4]
             + 1.2 * x[:, 5] - 0.0004 * x[:, 6] + 0.9 * np.log(x[:, 7] + 1e-3))
    y = (score + rng.normal(0, 0.5, n) > 2.6).astype(np.int64)
    return x, y


def fraud_model(version):
    """v1: logistic regression; v2: gradient boosting on more data (same signature)."""
    # Imported here: only model making needs scikit-learn.
    from skl2onnx import to_onnx  # pylint: disable=import-outside-toplevel
    from sklearn.ensemble import GradientBoostingClassifier  # pylint: disable=import-outside-toplevel
    from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
    from sklearn.pipeline import make_pipeline  # pylint: disable=import-outside-toplevel
    from sklearn.preprocessing import StandardScaler  # pylint: disable=import-outside-toplevel

    if version == "1.0":
        x, y = synthetic_transactions(20000, seed=1)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    elif version == REGRESSED:
        # A retraining gone wrong (labels inverted): it loads, its own golden vectors agree with
        # it, and it calls fraud legit. Only the operator's acceptance cases catch it in service.
        x, y = synthetic_transactions(20000, seed=1)
        y = 1 - y
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    else:
        x, y = synthetic_transactions(40000, seed=2)
        clf = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0)
    clf.fit(x, y)
    model = to_onnx(clf, x[:1], target_opset={"": 17, "ai.onnx.ml": 3},
                    options={id(clf): {"zipmap": False}} if not hasattr(clf, "steps")
                    else {id(clf.steps[-1][1]): {"zipmap": False}})
    model.graph.input[0].name = "transaction"
    for node in model.graph.node:
        node.input[:] = ["transaction" if i == "X" else i for i in node.input]
    model.graph.name = "fraud_detector"
    golden_inputs, _labels = synthetic_transactions(4, seed=99)
    return model, {"transaction": golden_inputs}, 0.0001, 5


def image_cnn(version):
    """An image classifier of realistic cost (~0.5 GFLOP): 4 conv blocks, pooling, dense, softmax."""
    rng = np.random.default_rng(7)
    channels = (3, 32, 64, 128, 256)
    inits, nodes, last = [], [], "image"
    for block, (c_in, c_out) in enumerate(zip(channels, channels[1:]), start=1):
        scale = np.sqrt(2.0 / (c_in * 9))  # He initialisation keeps activations in range
        weights = (rng.standard_normal((c_out, c_in, 3, 3)) * scale).astype(np.float32)
        inits += [numpy_helper.from_array(weights, f"w{block}"),
                  numpy_helper.from_array(np.zeros(c_out, np.float32), f"b{block}")]
        nodes += [helper.make_node("Conv", [last, f"w{block}", f"b{block}"], [f"c{block}"],
                                   pads=[1, 1, 1, 1], strides=[1, 1] if block == 1 else [2, 2]),
                  helper.make_node("Relu", [f"c{block}"], [f"r{block}"])]
        last = f"r{block}"
    inits += [numpy_helper.from_array((rng.standard_normal((256, 10)) * 0.1).astype(np.float32), "wd"),
              numpy_helper.from_array(np.zeros(10, np.float32), "bd")]
    nodes += [helper.make_node("GlobalAveragePool", [last], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "wd", "bd"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "image_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 128, 128])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgeml-lab", producer_version=version)
    model.ir_version = 8
    onnx.checker.check_model(model)
    # Multiples of 1/64 are exact in float32 and short in JSON.
    golden = np.floor(np.random.default_rng(11).random((1, 3, 128, 128)) * 64) / 64
    return model, {"image": golden.astype(np.float32)}, 0.0001, 200


# Faulty versions for the rollback tests: published to the core registry as models only.
BAD_GOLDEN = "1.2-badgolden"  # the golden vectors shipped with it do not match the model
REGRESSED = "1.3-regressed"   # self-consistent, but wrong on the operator's acceptance cases
FAULTY = {("fraud-detector", BAD_GOLDEN), ("fraud-detector", REGRESSED)}

SAMPLES = {
    # name: (builder, versions)
    "fraud-detector": (fraud_model, ("1.0", "1.1", BAD_GOLDEN, REGRESSED)),
    "image-classifier": (image_cnn, ("1.0",)),
}


def _signature(values):
    return [{"name": v.name, "datatype": ONNX_TO_V2[v.type],
             "shape": [d if isinstance(d, int) else -1 for d in v.shape]} for v in values]


def describe(name, version, model_bytes, golden_inputs, tolerance, latency_budget_ms):
    """The edgeml-model.json of a model: its signature and golden vectors from onnxruntime."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run(None, golden_inputs)
    golden = []
    for i in range(len(next(iter(golden_inputs.values())))):
        golden.append({
            "inputs": {k: v[i:i + 1].tolist() for k, v in golden_inputs.items()},
            "outputs": {o.name: out[i:i + 1].tolist()
                        for o, out in zip(session.get_outputs(), outputs)},
        })
    return {"name": name, "version": version,
            "inputs": _signature(session.get_inputs()),
            "outputs": _signature(session.get_outputs()),
            "golden": golden, "tolerance": tolerance, "latency_budget_ms": latency_budget_ms}


def make_samples(out_dir: Path):
    """Write every sample model; return {(name, version): directory}.

    Cached under a hash of this file, so a changed recipe makes new models.
    """
    out_dir = out_dir / hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    made = {}
    for name, (builder, versions) in SAMPLES.items():
        for version in versions:
            directory = out_dir / name / version
            if not (directory / "edgeml-model.json").exists():
                directory.mkdir(parents=True, exist_ok=True)
                model, golden_inputs, tolerance, budget = builder(version)
                data = model.SerializeToString()
                meta = describe(name, version, data, golden_inputs, tolerance, budget)
                if version == BAD_GOLDEN:  # a pipeline that shipped another model's vectors
                    for case in meta["golden"]:
                        case["outputs"]["probabilities"] = [
                            [round(1 - p, 6) for p in row] for row in case["outputs"]["probabilities"]]
                (directory / "model.onnx").write_bytes(data)
                (directory / "edgeml-model.json").write_text(json.dumps(meta, indent=2) + "\n")
            made[(name, version)] = directory
    return made


def acceptance_cases(samples, count=3):
    """The operator's reference cases for the fraud model: known fraud and known legit
    transactions (from the generator's ground truth) that the good versions agree on.
    Only the label is checked: a retrained model may move probabilities, not verdicts."""
    x, y = synthetic_transactions(400, seed=7)
    agree = np.ones(len(y), dtype=bool)
    for version in ("1.0", "1.1"):
        path = samples[("fraud-detector", version)] / "model.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        agree &= session.run(["label"], {"transaction": x})[0] == y
    picked = [i for label in (1, 0) for i in np.flatnonzero(agree & (y == label))[:count]]
    return [{"inputs": {"transaction": x[i:i + 1].tolist()}, "outputs": {"label": [int(y[i])]}}
            for i in picked]


def read_samples(state: Path):
    """{(name, version): directory} of the models the last `lab up` made."""
    index = json.loads((state / "samples.json").read_text())
    return {tuple(key.split("/")): Path(path) for key, path in index.items()}
