"""KServe v2 request decoding and response encoding: JSON tensors and the binary extension."""

import json

import numpy as np

V2_TO_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
               "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
               "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
NUMPY_TO_V2 = {np.dtype(v): k for k, v in V2_TO_NUMPY.items()}
ONNX_TO_V2 = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
              "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
              "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL"}


class BadRequest(Exception):
    """A request the protocol or the model cannot take; the message says what is wrong."""


def _shape_ok(shape, want):
    return len(shape) == len(want) and all(w in (-1, None) or w == s for s, w in zip(shape, want))


def decode(body, header_length, signature):
    """-> (id, {input name: array}, requested output names or None, binary outputs wanted)."""
    if header_length is not None:
        try:
            header_length = int(header_length)
        except ValueError:
            raise BadRequest("Inference-Header-Content-Length is not a number") from None
        if not 0 < header_length <= len(body):
            raise BadRequest("Inference-Header-Content-Length is larger than the request")
        header, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        header, binary = body, memoryview(b"")
    try:
        request = json.loads(header)
    except ValueError as exc:
        raise BadRequest(f"the request is not valid JSON: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise BadRequest("the request needs an 'inputs' list")
    expected = {i["name"]: i for i in signature}
    arrays, offset = {}, 0
    for tensor in request["inputs"]:
        if not isinstance(tensor, dict):
            raise BadRequest("each input is an object with name, shape, datatype and data")
        name = tensor.get("name")
        if name not in expected:
            raise BadRequest(f"unknown input '{name}'; the model takes {sorted(expected)}")
        want = expected[name]
        datatype, shape = tensor.get("datatype"), tensor.get("shape")
        if datatype != want["datatype"]:
            raise BadRequest(f"input '{name}' has datatype {datatype}; the model wants "
                             f"{want['datatype']}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BadRequest(f"input '{name}' needs a shape, a list of non-negative integers")
        if not _shape_ok(shape, want["shape"]):
            raise BadRequest(f"input '{name}' has shape {shape}; the model wants {want['shape']} "
                             "(-1: any size)")
        dtype = V2_TO_NUMPY[datatype]
        count = int(np.prod(shape)) if shape else 1
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        try:
            if size is not None:
                if size != count * np.dtype(dtype).itemsize or offset + size > len(binary):
                    raise BadRequest(f"input '{name}': binary_data_size {size} does not fit shape "
                                     f"{shape} of {datatype} or the data sent")
                array = np.frombuffer(binary[offset:offset + size], dtype=dtype).reshape(shape)
                offset += size
            else:
                data = tensor.get("data")
                if data is None:
                    raise BadRequest(f"input '{name}' has no data")
                array = np.asarray(data, dtype=dtype)
                if array.size != count:
                    raise BadRequest(f"input '{name}' has {array.size} values; shape {shape} "
                                     f"needs {count}")
                array = array.reshape(shape)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"input '{name}' data do not match {datatype}: {exc}") from None
        arrays[name] = array
    missing = set(expected) - set(arrays)
    if missing:
        raise BadRequest(f"missing inputs {sorted(missing)}")
    outputs = request.get("outputs")
    names, binary_out = None, bool((request.get("parameters") or {}).get("binary_data_output"))
    if outputs is not None:
        if not isinstance(outputs, list):
            raise BadRequest("'outputs' must be a list of {name}")
        names = [o.get("name") for o in outputs if isinstance(o, dict)]
        binary_out = binary_out or any((o.get("parameters") or {}).get("binary_data")
                                       for o in outputs if isinstance(o, dict))
    return request.get("id"), arrays, names, binary_out


def encode(model, version, request_id, outputs, binary):
    """-> (body bytes, headers) for {name: array}."""
    response = {"model_name": model, "model_version": version, "outputs": []}
    if request_id is not None:
        response["id"] = request_id
    chunks = []
    for name, array in outputs.items():
        array = np.ascontiguousarray(array)
        tensor = {"name": name, "datatype": NUMPY_TO_V2.get(array.dtype, "FP32"),
                  "shape": list(array.shape)}
        if binary:
            data = array.tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            tensor["data"] = array.ravel().tolist()
        response["outputs"].append(tensor)
    header = json.dumps(response, separators=(",", ":")).encode()
    if not binary:
        return header, {"content-type": "application/json"}
    return b"".join([header, *chunks]), {"content-type": "application/octet-stream",
                                         "inference-header-content-length": str(len(header))}
