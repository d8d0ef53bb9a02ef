"""KServe v2 request decoding and response encoding: JSON tensors and the binary extension.

BYTES tensors (ONNX strings) travel as JSON strings, or in binary form as the extension lays
them out: each element a 4-byte little-endian length followed by its bytes. The server hands
onnxruntime Python str objects (ONNX strings are UTF-8) and sends back what it returns, the same
way. Outputs no v2 datatype describes (sequences, maps) are refused by name.
"""

import json
import math
import struct

import numpy as np

V2_TO_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
               "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
               "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
               "BYTES": np.object_}
NUMPY_TO_V2 = {np.dtype(v): k for k, v in V2_TO_NUMPY.items()}
ONNX_TO_V2 = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
              "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
              "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
              "tensor(string)": "BYTES"}
LENGTH = struct.Struct("<I")


class BadRequest(Exception):
    """A request the protocol or the model cannot take; the message says what is wrong."""


class TooLarge(BadRequest):
    """A request over max_request_bytes: 413."""


def _shape_ok(shape, want):
    return len(shape) == len(want) and all(w in (-1, None) or w == s for s, w in zip(shape, want))


def _strings_from_binary(name, data, count):
    """The binary extension's BYTES layout -> a list of count str."""
    values, offset, end = [], 0, len(data)
    for _element in range(count):
        if offset + 4 > end:
            raise BadRequest(f"input '{name}': binary BYTES data end inside an element's length; "
                             f"shape needs {count} elements")
        (size,) = LENGTH.unpack_from(data, offset)
        offset += 4
        if offset + size > end:
            raise BadRequest(f"input '{name}': a BYTES element of {size} bytes runs past the "
                             "binary data sent")
        values.append(_text(name, bytes(data[offset:offset + size])))
        offset += size
    if offset != end:
        raise BadRequest(f"input '{name}': {end - offset} bytes left over after {count} BYTES "
                         "elements; binary_data_size does not match the shape")
    return values


def _text(name, value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"input '{name}': a BYTES element is not UTF-8 text, which ONNX strings "
                         "must be") from None


def _strings_from_json(name, data, count):
    flat, stack = [], [iter([data])]
    while stack:  # nested lists, depth first, without recursion
        item = next(stack[-1], StopIteration)
        if item is StopIteration:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif isinstance(item, str):
            flat.append(item)
        else:
            raise BadRequest(f"input '{name}' is BYTES: every element must be a string, got "
                             f"{type(item).__name__}")
    if len(flat) != count:
        raise BadRequest(f"input '{name}' has {len(flat)} values; its shape needs {count}")
    return flat


def _parameters(obj, where):
    """obj's "parameters" object ({} without one); a client may send anything there."""
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return parameters


def decode(body, header_length, signature, max_elements=None):
    """-> (id, {input name: array}, requested output names or None, binary outputs wanted).

    max_elements caps the elements all inputs declare together, checked on the declared shapes
    before anything is allocated for them."""
    if header_length is not None:
        try:
            header_length = int(header_length)
        except ValueError:
            raise BadRequest("Inference-Header-Content-Length is not a number") from None
        if not 0 < header_length <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {header_length} does not fit the "
                             f"request of {len(body)} bytes (1 to {len(body)})")
        header, binary = memoryview(body)[:header_length], memoryview(body)[header_length:]
    else:
        header, binary = body, memoryview(b"")
    try:
        request = json.loads(bytes(header) if isinstance(header, memoryview) else header)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request is not valid JSON: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise BadRequest("the request needs an 'inputs' list")
    expected = {i["name"]: i for i in signature}
    tensors, declared = [], 0
    for tensor in request["inputs"]:  # check every declared shape before reading any data
        if not isinstance(tensor, dict):
            raise BadRequest("each input is an object with name, shape, datatype and data")
        name = tensor.get("name")
        if not isinstance(name, str) or name not in expected:
            raise BadRequest(f"unknown input '{name}'; the model takes {sorted(expected)}")
        want = expected[name]
        datatype, shape = tensor.get("datatype"), tensor.get("shape")
        if datatype != want["datatype"]:
            raise BadRequest(f"input '{name}' has datatype {datatype}; the model wants "
                             f"{want['datatype']}")
        if datatype not in V2_TO_NUMPY:
            raise BadRequest(f"input '{name}' is a {datatype}, which the v2 protocol cannot carry")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise BadRequest(f"input '{name}' needs a shape, a list of non-negative integers")
        if not _shape_ok(shape, want["shape"]):
            raise BadRequest(f"input '{name}' has shape {shape}; the model wants {want['shape']} "
                             "(-1: any size)")
        count = math.prod(shape)  # Python integers: no overflow
        declared += count
        if max_elements is not None and declared > max_elements:
            raise BadRequest(f"input '{name}' has shape {shape}: the inputs declare {declared} "
                             f"elements, over the limit of {max_elements} per request")
        tensors.append((tensor, name, datatype, shape, count))
    arrays, offset = {}, 0
    for tensor, name, datatype, shape, count in tensors:
        dtype = V2_TO_NUMPY[datatype]
        size = _parameters(tensor, f"input '{name}'").get("binary_data_size")
        try:
            if size is not None:
                if isinstance(size, bool) or not isinstance(size, int) or size < 0 \
                        or offset + size > len(binary):
                    raise BadRequest(f"input '{name}': binary_data_size {size!r} does not fit "
                                     "the data sent")
                chunk = binary[offset:offset + size]
                offset += size
                if datatype == "BYTES":
                    array = np.array(_strings_from_binary(name, chunk, count), dtype=object)
                else:
                    if size != count * np.dtype(dtype).itemsize:
                        raise BadRequest(f"input '{name}': binary_data_size {size} does not fit "
                                         f"shape {shape} of {datatype}")
                    array = np.frombuffer(chunk, dtype=dtype)
                array = array.reshape(shape)
            else:
                data = tensor.get("data")
                if data is None:
                    raise BadRequest(f"input '{name}' has no data")
                if datatype == "BYTES":
                    array = np.array(_strings_from_json(name, data, count), dtype=object)
                else:
                    array = np.asarray(data, dtype=dtype)
                    if array.size != count:
                        raise BadRequest(f"input '{name}' has {array.size} values; shape "
                                         f"{shape} needs {count}")
                array = array.reshape(shape)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise BadRequest(f"input '{name}' data do not match {datatype}: {exc}") from None
        arrays[name] = array
    missing = set(expected) - set(arrays)
    if missing:
        raise BadRequest(f"missing inputs {sorted(missing)}")
    outputs = request.get("outputs")
    names, binary_out = None, bool(_parameters(request, "the request").get("binary_data_output"))
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise BadRequest("'outputs' must be a list of {name}")
        names = [o["name"] for o in outputs]
        binary_out = binary_out or any(_parameters(o, f"output '{o['name']}'").get("binary_data")
                                       for o in outputs)
    return request.get("id"), arrays, names, binary_out


def _as_text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _output(name, value):
    """-> (v2 datatype, contiguous array) for one model output, or BadRequest if it is none."""
    if not isinstance(value, np.ndarray):
        raise BadRequest(f"output '{name}' is a {type(value).__name__} (a sequence or map), which "
                         "the v2 protocol cannot carry; ask for the other outputs by name")
    if value.dtype.kind in "OSU":
        return "BYTES", value
    datatype = NUMPY_TO_V2.get(value.dtype)
    if datatype is None:
        raise BadRequest(f"output '{name}' has type {value.dtype}, which the v2 protocol cannot "
                         "carry")
    return datatype, np.ascontiguousarray(value)


def encode(model, version, request_id, outputs, binary):
    """-> (body bytes, headers) for {name: array}."""
    response = {"model_name": model, "model_version": version, "outputs": []}
    if request_id is not None:
        response["id"] = request_id
    chunks = []
    for name, value in outputs.items():
        datatype, array = _output(name, value)
        tensor = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if datatype == "BYTES":
            values = [_as_text(v) for v in array.ravel().tolist()]
            raw = b"".join(LENGTH.pack(len(b)) + b for b in (v.encode("utf-8") for v in values)) \
                if binary else None
        else:
            values = None if binary else array.ravel().tolist()
            raw = array.tobytes() if binary else None
        if binary:  # the extension: each element's bytes after the JSON header
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values
        response["outputs"].append(tensor)
    header = json.dumps(response, separators=(",", ":")).encode()
    if not binary:
        return header, {"content-type": "application/json"}
    return b"".join([header, *chunks]), {"content-type": "application/octet-stream",
                                         "inference-header-content-length": str(len(header))}
