"""The v2 REST routes, errors, auth, limits, binary tensors, metrics and hot reload."""

import asyncio
import json
import threading

import numpy as np
import pytest
from conftest import switch
from starlette.testclient import TestClient

from edgeml_serve.app import Server
from edgeml_serve.models import choose_providers


@pytest.fixture
def server(config_file):
    return Server(str(config_file))


@pytest.fixture
def client(server):
    with TestClient(server.app()) as test_client:
        yield test_client


def infer_json(data, shape=None, datatype="FP32", name="x"):
    return {"inputs": [{"name": name, "shape": shape or list(np.shape(data)),
                        "datatype": datatype, "data": data}]}


def test_health_and_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = client.get("/v2/models/scale").json()
    assert meta["versions"] == ["sha256:" + "a" * 64]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["execution_providers"] == ["CPUExecutionProvider"]  # what runs it, for the health gate
    assert client.get("/v2/models/scale/ready").json() == {"name": "scale", "ready": True}
    assert client.get(f"/v2/models/scale/versions/sha256:{'a' * 64}").status_code == 200


def test_infer_json(client, rows):
    resp = client.post("/v2/models/scale/infer", json=dict(infer_json(rows.tolist()), id="r1"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"] == "r1" and body["model_version"] == "sha256:" + "a" * 64
    assert body["outputs"][0]["shape"] == [2, 4]
    assert body["outputs"][0]["data"] == (rows * 2).ravel().tolist()
    flat = client.post("/v2/models/scale/infer", json=infer_json(rows.ravel().tolist(), [2, 4]))
    assert flat.json()["outputs"][0]["data"] == (rows * 2).ravel().tolist()


@pytest.mark.parametrize("inline_seconds, inline", [(10.0, True), (0.0, False)])
def test_fast_models_run_on_the_loop_slow_ones_on_worker_threads(config_file, rows, monkeypatch,
                                                                 inline_seconds, inline):
    from edgeml_serve import models  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(models, "INLINE_SECONDS", inline_seconds)
    server = Server(str(config_file))
    ran_on = []
    with TestClient(server.app()) as test_client:
        model = server.models.get("scale")
        assert model.inline is inline
        infer = model.infer
        monkeypatch.setattr(model, "infer", lambda *a: ran_on.append(
            threading.current_thread().name) or infer(*a))
        resp = test_client.post("/v2/models/scale/infer", json=infer_json(rows.tolist()))
    assert resp.json()["outputs"][0]["data"] == (rows * 2).ravel().tolist()
    assert ran_on[0].startswith("infer") is not inline


def test_infer_binary_extension(client, rows):
    header = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": rows.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    resp = client.post("/v2/models/scale/infer", content=header + rows.tobytes(),
                       headers={"Inference-Header-Content-Length": str(len(header))})
    assert resp.status_code == 200
    size = int(resp.headers["inference-header-content-length"])
    meta = json.loads(resp.content[:size])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == rows.nbytes
    np.testing.assert_array_equal(np.frombuffer(resp.content[size:], np.float32).reshape(2, 4),
                                  rows * 2)


@pytest.mark.parametrize("payload,status,fragment", [
    ({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400,
     "unknown input 'z'"),
    (infer_json([[1, 2, 3, 4]], datatype="INT64"), 400, "the model wants FP32"),
    (infer_json([[1, 2, 3]], [1, 3]), 400, "has shape [1, 3]; the model wants [-1, 4]"),
    (infer_json([1, 2, 3], [1, 4]), 400, "has 3 values; shape [1, 4] needs 4"),
    (infer_json([["a", "b", "c", "d"]]), 400, "do not match FP32"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}, 400, "has no data"),
    ({"inputs": []}, 400, "missing inputs ['x']"),
    ({"nothing": 1}, 400, "needs an 'inputs' list"),
    (dict(infer_json([[1, 2, 3, 4]]), outputs=[{"name": "nope"}]), 400, "unknown outputs"),
])
def test_bad_requests_say_what_is_wrong(client, payload, status, fragment):
    resp = client.post("/v2/models/scale/infer", json=payload)
    assert resp.status_code == status
    assert fragment in resp.json()["error"]


def test_not_json_and_unknown_model_and_version(client):
    assert "not valid JSON" in client.post("/v2/models/scale/infer", content=b"{").json()["error"]
    missing = client.post("/v2/models/nope/infer", json=infer_json([[1, 2, 3, 4]]))
    assert missing.status_code == 404 and "served: scale" in missing.json()["error"]
    wrong = client.post("/v2/models/scale/versions/sha256:dead/infer", json=infer_json([[1, 2, 3, 4]]))
    assert wrong.status_code == 404 and "is not served; serving sha256:aaaa" in wrong.json()["error"]


def test_request_size_limit(tmp_path, store):
    config = tmp_path / "small.yml"
    config.write_text(f"max_request_bytes: 2048\nmodels:\n  - name: scale\n    path: {store}/scale/current\n")
    with TestClient(Server(str(config)).app()) as client:
        resp = client.post("/v2/models/scale/infer", json=infer_json([[1.0] * 4] * 200))
        assert resp.status_code == 413 and "over the limit of 2048" in resp.json()["error"]


def test_bearer_token(tmp_path, store):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = tmp_path / "auth.yml"
    config.write_text(f"token_file: {token}\nmodels:\n  - name: scale\n    path: {store}/scale/current\n")
    with TestClient(Server(str(config)).app()) as client:
        assert client.get("/v2/health/ready").status_code == 200  # probes stay open
        assert client.get("/v2/models/scale").status_code == 401
        assert client.get("/metrics").status_code == 401
        ok = client.get("/v2/models/scale", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_metrics(client):
    client.post("/v2/models/scale/infer", json=infer_json([[1, 2, 3, 4]]))
    client.post("/v2/models/scale/infer", json={"inputs": []})
    text = client.get("/metrics").text
    assert 'edgeml_inference_requests_total{model="scale"} 1' in text
    assert 'edgeml_inference_errors_total{model="scale",code="400"} 1' in text
    assert 'edgeml_inference_latency_seconds_count{model="scale"} 1' in text
    assert f'edgeml_model_served_info{{model="scale",digest="sha256:{"a" * 64}"}} 1' in text
    assert 'edgeml_model_load_seconds{model="scale"}' in text


def test_hot_reload_swaps_version_and_keeps_old_on_failure(server, client, store):
    def scaled():
        return client.post("/v2/models/scale/infer", json=infer_json([[1, 1, 1, 1]])).json()

    assert scaled()["outputs"][0]["data"] == [2, 2, 2, 2]
    switch(store, "b")
    asyncio.run(server.reload())
    answer = scaled()
    assert answer["outputs"][0]["data"] == [3, 3, 3, 3]
    assert answer["model_version"] == "sha256:" + "b" * 64
    switch(store, "c")  # a version that does not load
    asyncio.run(server.reload())
    assert scaled()["model_version"] == "sha256:" + "b" * 64  # the old one keeps serving
    assert 'edgeml_model_load_failures_total{model="scale"} 1' in client.get("/metrics").text


def test_reload_with_a_broken_config_keeps_running(server, client, config_file):
    config_file.write_text("models: [oops\n")
    asyncio.run(server.reload())
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_not_ready_when_a_configured_model_does_not_load(tmp_path, store):
    config = tmp_path / "bad.yml"
    config.write_text(f"models:\n  - name: broken\n    path: {store}/scale/versions/{'c' * 64}\n")
    with TestClient(Server(str(config)).app()) as client:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/broken/ready").status_code == 503
        assert "loading failed" in client.get("/v2/models/broken").json()["error"]


@pytest.mark.parametrize("wanted,available,chosen", [
    (["auto"], ["CUDAExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["auto"], ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
     ["OpenVINOExecutionProvider", "CPUExecutionProvider"]),
    (["auto"], ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["CUDAExecutionProvider"], ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["OpenVINOExecutionProvider"], ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
     ["OpenVINOExecutionProvider", "CPUExecutionProvider"]),
])
def test_provider_choice_falls_back_to_cpu(wanted, available, chosen):
    assert choose_providers(wanted, available) == chosen
