"""The inference server as a real process, driven by tritonclient[http] (Triton's own client)."""

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton
from onnx import TensorProto, helper

from registries import free_port


def version_dir(store, name, version, source):
    """Lay a sample model out as the store does: versions/<hex>, made current by rename."""
    hexdigest = (version * 64)[:64]
    target = store / name / "versions" / hexdigest
    target.mkdir(parents=True)
    for file in ("model.onnx", "edgeml-model.json"):
        (target / file).write_bytes((source / file).read_bytes())
    link = store / name / ".current.tmp"
    link.symlink_to(f"versions/{hexdigest}")
    link.rename(store / name / "current")
    return "sha256:" + hexdigest


def start(tmp_path, store, names):
    """The server on a free port, serving <store>/<name>/current for each name."""
    port = free_port()
    config = tmp_path / "serve.yml"
    config.write_text(f"port: {port}\nthreads: 4\nmodels:\n" + "".join(
        f"  - {{name: {name}, path: {store}/{name}/current}}\n" for name in names))
    proc = subprocess.Popen([sys.executable, "-m", "edgeml_serve", "--config", str(config)],  # pylint: disable=consider-using-with
                            stderr=subprocess.PIPE, text=True)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.is_server_ready():
                break
        except Exception:  # pylint: disable=broad-except  # not listening yet
            pass
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    return client, proc, f"127.0.0.1:{port}"


@pytest.fixture
def served(tmp_path, sample_models):
    store = tmp_path / "store"
    versions = {"fraud": version_dir(store, "fraud", "1", sample_models[("fraud-detector", "1.0")]),
                "cnn": version_dir(store, "cnn", "a", sample_models[("image-classifier", "1.0")])}
    client, proc, url = start(tmp_path, store, ["fraud", "cnn"])
    yield client, proc, store, versions, sample_models, url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def text_served(tmp_path):
    """A model over strings: text [N] (BYTES) -> each with "!" appended."""
    source = tmp_path / "text-model"
    source.mkdir()
    graph = helper.make_graph(
        [helper.make_node("StringConcat", ["text", "bang"], ["shout"])], "shout",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("shout", TensorProto.STRING, ["N"])],
        [helper.make_tensor("bang", TensorProto.STRING, [1], [b"!"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 8
    (source / "model.onnx").write_bytes(model.SerializeToString())
    (source / "edgeml-model.json").write_text(json.dumps({"golden": [{"inputs": {"text": ["w"]}}]}))
    version_dir(tmp_path / "store", "text", "t", source)
    client, proc, _url = start(tmp_path, tmp_path / "store", ["text"])
    yield client
    proc.terminate()
    proc.wait(10)


def golden(sample_dir):
    return json.loads((sample_dir / "edgeml-model.json").read_text())["golden"][0]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_health_metadata_infer(served, binary):
    client, _proc, _store, versions, samples, _url = served
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fraud") and client.is_model_ready("cnn")
    meta = client.get_model_metadata("cnn")
    assert meta["versions"] == [versions["cnn"]]
    assert meta["inputs"][0] == {"name": "image", "datatype": "FP32", "shape": [-1, 3, 128, 128]}
    for model, sample in (("cnn", ("image-classifier", "1.0")), ("fraud", ("fraud-detector", "1.0"))):
        gold = golden(samples[sample])
        inputs = []
        for name, data in gold["inputs"].items():
            array = np.array(data, dtype=np.float32)
            tensor = triton.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in gold["outputs"]]
        result = client.infer(model, inputs, outputs=outputs)
        for name, want in gold["outputs"].items():
            np.testing.assert_allclose(result.as_numpy(name), np.array(want), atol=1e-4)
        assert result.get_response()["model_version"] == versions[model]


def test_sighup_switches_version_without_failing_a_request(served, sample_models):
    client, proc, store, versions, _samples, url = served
    new = version_dir(store, "fraud", "2", sample_models[("fraud-detector", "1.1")])
    gold = golden(sample_models[("fraud-detector", "1.0")])
    array = np.array(gold["inputs"]["transaction"], dtype=np.float32)
    failures, seen, stop = [], set(), threading.Event()

    def hammer():
        local = triton.InferenceServerClient(url=url)
        while not stop.is_set():
            tensor = triton.InferInput("transaction", list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            try:
                seen.add(local.infer("fraud", [tensor]).get_response()["model_version"])
            except Exception as exc:  # pylint: disable=broad-except
                failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _index in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while client.get_model_metadata("fraud")["versions"] != [new] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    assert seen == {versions["fraud"], new}


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_tritonclient_bytes_tensors(text_served, binary_in, binary_out):
    """BYTES in and out, each way tritonclient sends and reads them."""
    texts = np.array(["héllo".encode(), b"", "日本".encode()], dtype=object)
    tensor = triton.InferInput("text", [3], "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=binary_in)
    result = text_served.infer("text", [tensor], outputs=[
        triton.InferRequestedOutput("shout", binary_data=binary_out)])
    assert [bytes(v) if not isinstance(v, str) else v.encode() for v in result.as_numpy("shout")] \
        == ["héllo!".encode(), b"!", "日本!".encode()]
    assert result.get_output("shout")["datatype"] == "BYTES"
