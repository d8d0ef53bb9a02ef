# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: just enough of a KServe v2 (Open Inference Protocol) REST client.

Decided here: how the health probes, model metadata and JSON inference are asked for, what
counts as an answer, and how a golden case becomes an inference request. Datatypes come from
the model's metadata as the server reports it, so no ONNX datatype table is needed here.
Standard library and ansible.module_utils only: it runs on the edge host.
"""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlsplit

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.edgeml.fleet.plugins.module_utils._golden import GoldenError, flatten, shape_of


# The options of every module that talks to an inference server (doc fragment edgeml.fleet.v2_server).
SERVER_ARGS = {
    "url": {"type": "str", "default": "http://127.0.0.1:8080"},
    "token": {"type": "str", "no_log": True},
    "request_timeout": {"type": "int", "default": 10},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
}


class ProbeError(Exception):
    pass


class V2Client:
    """Just enough of the v2 REST protocol: GETs and a JSON infer."""

    def __init__(self, params):
        self.base = params["url"].rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if params["token"]:
            self.headers["Authorization"] = f"Bearer {params['token']}"
        self.options = {"validate_certs": params["validate_certs"], "ca_path": params["ca_path"],
                        "timeout": params["request_timeout"]}

    def call(self, path, body=None):
        """(status, parsed JSON or None). Connection errors raise ProbeError."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            response = open_url(self.base + path, data=data, headers=self.headers,
                                method="POST" if data else "GET", **self.options)
            status, raw = response.getcode(), response.read()
        except HTTPError as exc:
            status, raw = exc.code, exc.read() if exc.fp else b""
        except (URLError, OSError, ValueError) as exc:
            raise ProbeError(f"{self.base}{path}: {getattr(exc, 'reason', exc)}") from None
        try:
            return status, json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
            return status, None

    def ok(self, path):
        try:
            return self.call(path)[0] == 200
        except ProbeError:
            return False

    def served_version(self, model):
        """(the first of the model's versions or None, its metadata)."""
        status, meta = self.call(f"/v2/models/{model}")
        if status != 200 or not isinstance(meta, dict):
            return None, meta
        versions = meta.get("versions") or []
        return (versions[0] if versions else None), meta

    def infer(self, model, body):
        """{output name: flat data} of one inference; anything but a 200 raises ProbeError."""
        status, answer = self.call(f"/v2/models/{model}/infer", body)
        if status != 200 or not isinstance(answer, dict):
            why = answer.get("error") if isinstance(answer, dict) else answer
            raise ProbeError(f"{self.base}: inference on '{model}' answered HTTP {status}: {why}")
        return {out["name"]: out.get("data") for out in answer.get("outputs") or []}


class KeepAlive:
    """Inferences over one kept-alive HTTP connection, as a real client sends them. Timings taken
    through it measure the server, not a TCP (and TLS) handshake per request, which open_url
    would add: a model answering in 0.3 ms would otherwise look like 30 ms."""

    def __init__(self, client):
        parts = urlsplit(client.base)
        timeout = client.options["timeout"]
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=client.options["ca_path"])
            if not client.options["validate_certs"]:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self.conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                                    context=context)
        else:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        self.base, self.prefix, self.headers = client.base, parts.path.rstrip("/"), client.headers

    def infer(self, model, body):
        """One inference; anything but a 200 raises ProbeError (and the connection is closed)."""
        try:
            self.conn.request("POST", f"{self.prefix}/v2/models/{model}/infer", json.dumps(body).encode(),
                              self.headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise ProbeError(f"{self.base}: inference on '{model}': {exc}") from None
        if response.status != 200:
            self.conn.close()
            raise ProbeError(f"{self.base}: inference on '{model}' answered HTTP {response.status}: "
                             f"{raw[:200].decode('utf-8', 'replace')}")

    def close(self):
        self.conn.close()


def infer_request(case, meta):
    """The v2 request of a golden case, each input typed as the model's metadata says."""
    types = {i["name"]: i.get("datatype", "FP32") for i in meta.get("inputs") or []}
    unknown = set(case["inputs"]) - set(types)
    if unknown and types:
        raise GoldenError(f"golden inputs {sorted(unknown)} are not inputs of the model "
                          f"({sorted(types)})")
    return {"inputs": [{"name": name, "shape": shape_of(value),
                        "datatype": types.get(name, "FP32"), "data": flatten(value)}
                       for name, value in case["inputs"].items()]}


def zero_request(meta):
    """A request of zeros for every input (a symbolic size becomes 1): something to time."""
    return {"inputs": [{"name": i["name"], "datatype": i["datatype"],
                        "shape": [d if d > 0 else 1 for d in i["shape"]],
                        "data": [0] * _size(i["shape"])}
                       for i in meta.get("inputs") or []]}


def _size(shape):
    size = 1
    for dim in shape:
        size *= dim if dim > 0 else 1
    return size
