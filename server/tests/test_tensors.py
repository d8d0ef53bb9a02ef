"""Tensors beyond numbers: BYTES (ONNX strings) in JSON and binary form, outputs the protocol
cannot carry, declared shapes over the element cap; and the configuration's limits."""

import json
import struct

import numpy as np
import pytest
from conftest import make_model, make_string_model, make_zipmap_model
from starlette.testclient import TestClient
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from edgeml_serve import config as config_mod
from edgeml_serve.app import Server

TEXTS = ["héllo", "", "a b\nc", "日本"]


@pytest.fixture
def client(tmp_path):
    store = tmp_path / "store"
    for name, make in (("text", make_string_model), ("classify", make_zipmap_model),
                       ("scale", make_model)):
        make(store / name / "versions" / ("a" * 64))
        (store / name / "current").symlink_to("versions/" + "a" * 64)
    config = tmp_path / "serve.yml"
    config.write_text("max_request_bytes: 4096\nmodels:\n" + "".join(
        f"  - {{name: {m}, path: {store}/{m}/current}}\n" for m in ("text", "classify", "scale")))
    with TestClient(Server(str(config)).app()) as test_client:
        yield test_client


def binary_request(inputs, outputs_binary=True, outputs=None):
    """The binary tensor extension: a JSON header, then each input's bytes."""
    header = {"inputs": [], "parameters": {"binary_data_output": outputs_binary}}
    if outputs:
        header["outputs"] = outputs
    chunks = []
    for name, datatype, shape, raw in inputs:
        header["inputs"].append({"name": name, "datatype": datatype, "shape": shape,
                                 "parameters": {"binary_data_size": len(raw)}})
        chunks.append(raw)
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head))}


def split_binary(resp):
    size = int(resp.headers["inference-header-content-length"])
    return json.loads(resp.content[:size]), resp.content[size:]


def test_bytes_metadata(client):
    meta = client.get("/v2/models/text").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "shout", "datatype": "BYTES", "shape": [-1]}]


def test_bytes_in_json(client):
    resp = client.post("/v2/models/text/infer", json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [4], "data": TEXTS}]})
    assert resp.status_code == 200, resp.text
    out = resp.json()["outputs"][0]
    assert out == {"name": "shout", "datatype": "BYTES", "shape": [4],
                   "data": [t + "!" for t in TEXTS]}


def test_bytes_in_binary_form_as_tritonclient_lays_them_out(client):
    raw = serialize_byte_tensor(np.array([t.encode() for t in TEXTS], dtype=object)).item()
    body, headers = binary_request([("text", "BYTES", [4], raw)])
    resp = client.post("/v2/models/text/infer", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    meta, data = split_binary(resp)
    out = meta["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [4]
    assert out["parameters"]["binary_data_size"] == len(data)
    # Length-prefixed UTF-8, not the addresses of Python objects.
    assert [v.decode() for v in deserialize_bytes_tensor(data)] == [t + "!" for t in TEXTS]
    expected = b"".join(struct.pack("<I", len(t.encode()) + 1) + t.encode() + b"!" for t in TEXTS)
    assert data == expected


def test_bytes_json_in_binary_out_and_back(client):
    resp = client.post("/v2/models/text/infer", json={
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}],
        "outputs": [{"name": "shout", "parameters": {"binary_data": True}}]})
    data = split_binary(resp)[1]
    assert [v.decode() for v in deserialize_bytes_tensor(data)] == ["x!", "y!"]
    raw = serialize_byte_tensor(np.array([b"q"], dtype=object)).item()
    body, headers = binary_request([("text", "BYTES", [1], raw)], outputs_binary=False)
    resp = client.post("/v2/models/text/infer", content=body, headers=headers)
    assert resp.json()["outputs"][0]["data"] == ["q!"]


@pytest.mark.parametrize("data,shape,fragment", [
    (["a", 1], [2], "every element must be a string, got int"),
    (["a"], [2], "has 1 values; its shape needs 2"),
    ([["a"], ["b"]], [2], None),  # nested lists are fine when the count matches
])
def test_bytes_json_mistakes(client, data, shape, fragment):
    resp = client.post("/v2/models/text/infer", json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": shape, "data": data}]})
    if fragment is None:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.status_code == 400 and fragment in resp.json()["error"]


@pytest.mark.parametrize("raw,shape,fragment", [
    (struct.pack("<I", 10) + b"abc", [1], "runs past the binary data"),
    (struct.pack("<I", 1) + b"a" + b"\x00\x00", [1], "2 bytes left over"),
    (struct.pack("<I", 1) + b"a", [2], "end inside an element's length"),
    (struct.pack("<I", 2) + b"\xff\xfe", [1], "not UTF-8"),
])
def test_bytes_binary_mistakes(client, raw, shape, fragment):
    body, headers = binary_request([("text", "BYTES", shape, raw)])
    resp = client.post("/v2/models/text/infer", content=body, headers=headers)
    assert resp.status_code == 400 and fragment in resp.json()["error"], resp.text


def test_outputs_the_protocol_cannot_carry(client):
    """A classifier's sequence-of-maps output (skl2onnx's ZipMap) is left out by default and
    refused by name when asked for, in either form; never sent as object addresses."""
    rows = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [0.2, 0.8]}]}
    resp = client.post("/v2/models/classify/infer", json=rows)
    assert resp.status_code == 200
    assert [(o["name"], o["datatype"], o["data"]) for o in resp.json()["outputs"]] == [
        ("label", "INT64", [1])]
    for binary in (False, True):
        asked = dict(rows, outputs=[{"name": "probabilities",
                                     "parameters": {"binary_data": binary}}])
        resp = client.post("/v2/models/classify/infer", json=asked)
        assert resp.status_code == 400
        assert "output 'probabilities' is a list (a sequence or map), which the v2 protocol " \
               "cannot carry" in resp.json()["error"]


@pytest.mark.parametrize("shape,extra", [
    ([1 << 40, 4], {"data": [1, 2, 3, 4]}),
    ([1 << 20, 4], {"parameters": {"binary_data_size": 16}}),
    ([2 ** 62, 4], {"data": []}),  # 2 ** 64: 0 as a 64-bit product
])
def test_declared_shapes_over_the_element_cap(client, shape, extra):
    resp = client.post("/v2/models/scale/infer", json={"inputs": [
        dict({"name": "x", "datatype": "FP32", "shape": shape}, **extra)]})
    assert resp.status_code == 400
    assert "over the limit of 4096 per request" in resp.json()["error"]


def test_element_cap_counts_all_inputs_and_strings(client):
    resp = client.post("/v2/models/text/infer", json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [5000], "data": ["a"]}]})
    assert resp.status_code == 400 and "declare 5000 elements" in resp.json()["error"]


def test_deeply_nested_json_is_a_bad_request(client):
    resp = client.post("/v2/models/scale/infer", content=b"[" * 3000 + b"]" * 3000)
    assert resp.status_code in (400, 413)


def write_config(tmp_path, text):
    path = tmp_path / "serve.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,fragment", [
    ("header_timeout: 0\n", "header_timeout must be a number above 0"),
    ("body_timeout: -1\n", "body_timeout must be a number above 0"),
    ("limit_concurrency: 0\n", "limit_concurrency must be a number above 0"),
    ("keep_alive_timeout: yes\n", "keep_alive_timeout must be a number above 0"),
    ("max_header_bytes: 10\n", "max_header_bytes must be >= 1024"),
    ("max_buffered_bytes: 2048\n", "must be 0 or at least max_request_bytes"),
])
def test_limits_are_checked(tmp_path, text, fragment):
    with pytest.raises(config_mod.ConfigError, match=fragment):
        config_mod.load(write_config(tmp_path, text))


def test_limit_defaults(tmp_path):
    config = config_mod.load(write_config(tmp_path, "max_request_bytes: 2048\n"))
    assert (config.limit_concurrency, config.header_timeout, config.body_timeout,
            config.keep_alive_timeout) == (128, 10.0, 30.0, 5.0)
    assert config.buffered_bytes == 8192 and config.max_elements == 2048


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_a_blank_token_file_is_refused_not_served_open(tmp_path, content):
    token = tmp_path / "token"
    token.write_text(content)
    path = write_config(tmp_path, f"token_file: {token}\n")
    with pytest.raises(config_mod.ConfigError, match="is empty"):
        Server(path)


# --- request fields of the wrong JSON type (review of the abuse limits) --------------------------
GOOD_X = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}


@pytest.mark.parametrize("request_body,fragment", [
    ({"inputs": [dict(GOOD_X, name=[])]}, "unknown input"),
    ({"inputs": [dict(GOOD_X, name={"a": 1})]}, "unknown input"),
    ({"inputs": [dict(GOOD_X, parameters=[1])]}, "'parameters' must be an object"),
    ({"inputs": [GOOD_X], "parameters": [1]}, "'parameters' must be an object"),
    ({"inputs": [GOOD_X], "outputs": [{"name": "y", "parameters": "binary"}]},
     "'parameters' must be an object"),
    ({"inputs": [GOOD_X], "outputs": [{"name": [1]}]}, "'outputs' must be a list of {name}"),
    ({"inputs": [GOOD_X], "outputs": [{"name": 1}, {"name": "z"}]},
     "'outputs' must be a list of {name}"),
], ids=["name a list", "name an object", "input parameters a list", "request parameters a list",
        "output parameters a string", "output name a list", "output names of mixed types"])
def test_request_fields_of_the_wrong_type_are_a_bad_request(client, caplog, request_body, fragment):
    """Each was a 500 with a traceback in the log (unhashable name, list.get, int < str)."""
    resp = client.post("/v2/models/scale/infer", json=request_body)
    assert resp.status_code == 400 and fragment in resp.json()["error"], resp.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


@pytest.mark.parametrize("value", ["-5", "0", "100000"])
def test_a_header_length_outside_the_request_says_so(client, value):
    resp = client.post("/v2/models/scale/infer", content=json.dumps({"inputs": [GOOD_X]}),
                       headers={"Inference-Header-Content-Length": value})
    assert resp.status_code == 400
    assert f"Inference-Header-Content-Length {value} does not fit the request" \
        in resp.json()["error"]


def test_made_up_model_names_add_no_metrics(client):
    """A metrics label per made-up name grew the server without bound (2000 requests with 60 KB
    names: 75 -> 190 MiB, a 120 MB /metrics page) and let a name inject lines into /metrics."""
    for index in range(50):
        assert client.post(f"/v2/models/{'n' * 1000}{index}/infer", json={}).status_code == 404
    # x"} 1\nedgeml_injected_total{model="y
    injected = "x%22%7D%201%0Aedgeml_injected_total%7Bmodel%3D%22y"
    assert client.post(f"/v2/models/{injected}/infer", json={}).status_code == 404
    text = client.get("/metrics").text
    assert "nnnn" not in text and "edgeml_injected_total" not in text, text[-500:]
    assert 'edgeml_inference_errors_total{model="(not served)",code="404"} 51' in text
    assert len(text) < 8192
