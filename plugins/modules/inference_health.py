#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: inference_health
short_description: Probe a model served over the KServe Open Inference Protocol (v2)
version_added: 0.1.0
description:
  - Waits up to O(timeout) seconds until the server is live and ready, the model is ready and,
    with O(version), serves that version (the manifest digest the edgeml server reports).
  - Then sends the golden cases and compares the answers, and times O(requests) inferences
    against the latency SLO (O(latency_p50_ms), O(latency_p95_ms)).
  - Only the v2 protocol is used, so it also probes Triton, OpenVINO Model Server, MLServer or
    KServe model servers.
  - Fails with a message naming the check that failed and by how much; every figure is also
    returned, so a health gate can report it.
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.read_only
options:
  url:
    description: Base URL of the server.
    type: str
    default: http://127.0.0.1:8080
  model:
    description: The model to probe; without it only the server's live and ready probes run.
    type: str
  version:
    description: The version the model must serve (for the edgeml server, the manifest digest
      C(sha256:...)); waits for it until O(timeout).
    type: str
  token:
    description: Bearer token for the server.
    type: str
  golden:
    description:
      - Golden cases C({inputs, outputs}) with tensors as nested lists (batch dimension first).
        Only the outputs a case names are compared.
      - Checked after those of O(golden_file), for example the operator's acceptance cases on
        top of the model's own golden vectors.
    type: list
    elements: dict
  golden_file:
    description: An C(edgeml-model.json) on the host whose C(golden) cases and C(tolerance)
      are used (for example the served version's, in the store).
    type: path
  tolerance:
    description: Tolerance for golden outputs, |actual - expected| <= tolerance * (1 + |expected|).
      Default the golden file's, else V(0.0001).
    type: float
  requests:
    description: Timed inferences of the first golden case; V(0) skips the latency check.
    type: int
    default: 20
  latency_p50_ms:
    description: SLO for the median latency of one request, as the client sees it.
    type: float
  latency_p95_ms:
    description: SLO for the 95th percentile latency.
    type: float
  timeout:
    description: Seconds to wait for readiness and for O(version).
    type: int
    default: 60
  request_timeout:
    description: Seconds to wait for one HTTP answer.
    type: int
    default: 10
  validate_certs:
    description: Verify the server's TLS certificate (for an https O(url)).
    type: bool
    default: true
  ca_path:
    description: CA bundle for the server's certificate.
    type: path
notes:
  - Runs on the edge host with only the Python standard library; by default it probes the local
    server.
seealso:
  - module: edgeml.fleet.model_verify
  - name: KServe Open Inference Protocol
    description: The v2 REST protocol.
    link: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
"""

EXAMPLES = r"""
- name: Health gate after activating a new version
  edgeml.fleet.inference_health:
    model: fraud-detector
    version: "{{ digest }}"
    golden_file: /var/lib/edgeml/models/fraud-detector/current/edgeml-model.json
    latency_p95_ms: 20
    timeout: 60

- name: Probe a Triton server
  edgeml.fleet.inference_health:
    url: http://triton.example.com:8000
    model: resnet
    golden:
      - inputs: {INPUT__0: [[0.1, 0.2, 0.3]]}
        outputs: {OUTPUT__0: [[1]]}
  delegate_to: localhost
"""

RETURN = r"""
healthy:
  description: Whether every check passed (always true when the module did not fail).
  returned: always
  type: bool
  sample: true
live:
  description: The server answered C(/v2/health/live).
  returned: always
  type: bool
ready:
  description: The server answered C(/v2/health/ready).
  returned: always
  type: bool
model_ready:
  description: The model answered C(/v2/models/<model>/ready).
  returned: when O(model) is given
  type: bool
served_version:
  description: The version the model's metadata reports (the first of C(versions)).
  returned: when O(model) is given and the server answered
  type: str
  sample: sha256:5d1c3f0f0a3e2b8e4a7f3c0d6b1e9a8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a
golden:
  description: Result of the golden cases.
  returned: when O(model) is given and the server answered
  type: dict
  sample: {passed: true, cases: 4, failed: 0, max_abs_error: 0.0, problems: []}
latency:
  description: Client-side latency of O(requests) inferences, in milliseconds, with the SLO.
  returned: when latency was measured
  type: dict
  sample: {p50_ms: 1.9, p95_ms: 2.6, max_ms: 3.1, samples: 20, slo_p50_ms: null, slo_p95_ms: 20, passed: true}
waited:
  description: Seconds spent waiting for readiness and the expected version.
  returned: always
  type: float
  sample: 0.4
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.edgeml.fleet.plugins.module_utils._golden import (
    DEFAULT_TOLERANCE, GoldenError, check_cases, compare_outputs, flatten, latency_summary,
    read_metadata, shape_of)


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
        except ValueError:
            return status, None

    def ok(self, path):
        try:
            return self.call(path)[0] == 200
        except ProbeError:
            return False


def served_version(client, model):
    status, meta = client.call(f"/v2/models/{model}")
    if status != 200 or not isinstance(meta, dict):
        return None, meta
    versions = meta.get("versions") or []
    return (versions[0] if versions else None), meta


def wait(client, params, result):
    """Poll until live, ready, model ready and the expected version; or explain what is missing."""
    model, version = params["model"], params["version"]
    deadline = time.monotonic() + params["timeout"]
    started = time.monotonic()
    meta = None
    while True:
        result["live"] = client.ok("/v2/health/live")
        result["ready"] = result["live"] and client.ok("/v2/health/ready")
        waiting = None
        if not result["live"]:
            waiting = "the server is not live (not running or not listening?)"
        elif model:
            result["model_ready"] = client.ok(f"/v2/models/{model}/ready")
            if not result["model_ready"]:
                waiting = f"model '{model}' is not ready (not configured, or it failed to load)"
            else:
                result["served_version"], meta = served_version(client, model)
                if version and result["served_version"] != version:
                    waiting = (f"model '{model}' serves {result['served_version']}, expected "
                               f"{version} (the new version may have failed to load; see the "
                               "server's log)")
        elif not result["ready"]:
            waiting = "the server is live but not ready"
        if waiting is None:
            result["waited"] = round(time.monotonic() - started, 3)
            return meta
        if time.monotonic() >= deadline:
            result["waited"] = round(time.monotonic() - started, 3)
            raise ProbeError(f"{client.base}: after {params['timeout']} s, {waiting}")
        time.sleep(0.5)


def infer_request(case, meta):
    types = {i["name"]: i.get("datatype", "FP32") for i in meta.get("inputs") or []}
    unknown = set(case["inputs"]) - set(types)
    if unknown and types:
        raise GoldenError(f"golden inputs {sorted(unknown)} are not inputs of the model "
                          f"({sorted(types)})")
    return {"inputs": [{"name": name, "shape": shape_of(value),
                        "datatype": types.get(name, "FP32"), "data": flatten(value)}
                       for name, value in case["inputs"].items()]}


def infer(client, model, body):
    status, answer = client.call(f"/v2/models/{model}/infer", body)
    if status != 200 or not isinstance(answer, dict):
        why = answer.get("error") if isinstance(answer, dict) else answer
        raise ProbeError(f"{client.base}: inference on '{model}' answered HTTP {status}: {why}")
    return {out["name"]: out.get("data") for out in answer.get("outputs") or []}


def check_golden(client, model, meta, cases, tolerance):
    problems, worst, failed = [], 0.0, 0
    for number, case in enumerate(cases, 1):
        actual = infer(client, model, infer_request(case, meta))
        flat_expected = {name: flatten(value) for name, value in case["outputs"].items()}
        case_problems, case_worst = compare_outputs(actual, flat_expected, tolerance)
        worst = max(worst, case_worst)
        if case_problems:
            failed += 1
            problems.extend(f"case {number}: {p}" for p in case_problems)
    return {"passed": not problems, "cases": len(cases), "failed": failed,
            "max_abs_error": worst, "tolerance": tolerance, "problems": problems}


def check_latency(client, model, body, params):
    seconds = []
    for _request in range(params["requests"]):
        started = time.perf_counter()
        infer(client, model, body)
        seconds.append(time.perf_counter() - started)
    summary = latency_summary(seconds)
    summary.update(slo_p50_ms=params["latency_p50_ms"], slo_p95_ms=params["latency_p95_ms"])
    over = []
    for key in ("p50", "p95"):
        slo = params[f"latency_{key}_ms"]
        if slo is not None and summary[f"{key}_ms"] > slo:
            over.append(f"{key} {summary[f'{key}_ms']} ms is over the SLO of {slo} ms by "
                        f"{round(summary[f'{key}_ms'] - slo, 3)} ms")
    summary["passed"] = not over
    summary["problems"] = over
    return summary


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8080"},
            "model": {"type": "str"},
            "version": {"type": "str"},
            "token": {"type": "str", "no_log": True},
            "golden": {"type": "list", "elements": "dict"},
            "golden_file": {"type": "path"},
            "tolerance": {"type": "float"},
            "requests": {"type": "int", "default": 20},
            "latency_p50_ms": {"type": "float"},
            "latency_p95_ms": {"type": "float"},
            "timeout": {"type": "int", "default": 60},
            "request_timeout": {"type": "int", "default": 10},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
        },
        required_by={"version": "model", "golden": "model", "golden_file": "model"},
        supports_check_mode=True,
    )
    params = module.params
    result = {"changed": False, "healthy": False, "live": False, "ready": False, "waited": 0.0}
    if params["requests"] < 0 or params["timeout"] < 0 or params["request_timeout"] < 1:
        module.fail_json(msg="requests and timeout must be 0 or more, request_timeout 1 or more")
    if not params["url"].startswith(("http://", "https://")):
        module.fail_json(msg=f"url must start with http:// or https://, got {params['url']!r}")
    where = params["model"] and f"model '{params['model']}' at {params['url']}" or params["url"]
    try:
        metadata = read_metadata(params["golden_file"])
        if params["golden_file"] and not metadata:
            raise GoldenError(f"golden_file {params['golden_file']} does not exist")
        cases = check_cases(metadata.get("golden") or [], params["golden_file"]) + \
            check_cases(params["golden"] or [], "golden")
        tolerance = params["tolerance"] if params["tolerance"] is not None else \
            float(metadata.get("tolerance", DEFAULT_TOLERANCE))
        client = V2Client(params)
        meta = wait(client, params, result)
        if params["model"]:
            if cases:
                result["golden"] = check_golden(client, params["model"], meta, cases, tolerance)
                if not result["golden"]["passed"]:
                    raise ProbeError("golden cases answered wrong: "
                                     + "; ".join(result["golden"]["problems"][:3]))
            if params["requests"]:
                body = infer_request(cases[0], meta) if cases else None
                if body is None:
                    body = {"inputs": [{"name": i["name"], "datatype": i["datatype"],
                                        "shape": [d if d > 0 else 1 for d in i["shape"]],
                                        "data": [0] * _size(i["shape"])}
                                       for i in meta.get("inputs") or []]}
                result["latency"] = check_latency(client, params["model"], body, params)
                if not result["latency"]["passed"]:
                    raise ProbeError("latency " + "; ".join(result["latency"]["problems"]))
    except (GoldenError, ProbeError) as exc:
        module.fail_json(msg=f"{where}: {exc}", **result)
    result["healthy"] = True
    module.exit_json(**result)


def _size(shape):
    size = 1
    for dim in shape:
        size *= dim if dim > 0 else 1
    return size


if __name__ == "__main__":
    main()
