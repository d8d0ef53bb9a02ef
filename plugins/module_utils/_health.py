# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: inference_health's run, the health gate of a served model.

Decided here: what the gate waits for (live, ready, model ready, the expected version) and for
how long, the order of the checks after it (golden cases, then latency against the SLO), and
the message that names the check that failed and by how much. The v2 client is _v2client.py,
the golden-case judge _golden.py.
"""

from __future__ import annotations

import time

from ansible_collections.edgeml.fleet.plugins.module_utils._golden import (
    DEFAULT_TOLERANCE, GoldenError, check_cases, judge_cases, read_metadata, time_runs)
from ansible_collections.edgeml.fleet.plugins.module_utils._v2client import (
    KeepAlive, ProbeError, V2Client, infer_request, zero_request)


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
                result["served_version"], meta = client.served_version(model)
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


def check_latency(client, model, body, params):
    """Time params["requests"] inferences of body, over one kept-alive connection after one
    untimed request (it opens the connection), against the p50/p95 SLO."""
    session = KeepAlive(client)
    try:
        summary = time_runs(lambda: session.infer(model, body), params["requests"], warmup=1)
    finally:
        session.close()
    summary["connection"] = "keep-alive"
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


def check_provider(model, meta, allowed, result):
    """The execution provider the server runs the model on (the first it lists) must be one of
    allowed: an accelerator build that silently fell back to CPU fails the gate."""
    listed = meta.get("execution_providers") if isinstance(meta, dict) else None
    in_use = listed[0] if isinstance(listed, list) and listed and isinstance(listed[0], str) else None
    result["execution_provider"] = in_use
    if not allowed:
        return
    result["provider_ok"] = in_use in allowed
    if in_use is None:
        raise ProbeError(f"model '{model}': the server does not say which execution provider runs it "
                         f"(expected one of {', '.join(allowed)}); it is not the edgeml server, or too old")
    if in_use not in allowed:
        raise ProbeError(f"model '{model}' runs on {in_use}, expected {' or '.join(allowed)}: the "
                         "accelerator's ONNX Runtime build fell back (driver, device or library "
                         "missing? see the server's log), or allow CPU for this host")


def golden_cases(params):
    """(cases, tolerance): golden_file's cases and tolerance, then the golden option's cases."""
    metadata = read_metadata(params["golden_file"])
    if params["golden_file"] and not metadata:
        raise GoldenError(f"golden_file {params['golden_file']} does not exist")
    cases = check_cases(metadata.get("golden") or [], params["golden_file"]) + \
        check_cases(params["golden"] or [], "golden")
    tolerance = params["tolerance"] if params["tolerance"] is not None else \
        float(metadata.get("tolerance", DEFAULT_TOLERANCE))
    return cases, tolerance


def probe(params, result):
    """Wait for the server and model, then judge golden cases and latency; raise on a failure."""
    model = params["model"]
    cases, tolerance = golden_cases(params)
    client = V2Client(params)
    meta = wait(client, params, result)
    if not model:
        return
    check_provider(model, meta, params.get("providers"), result)
    if cases:
        result["golden"] = judge_cases(
            cases, lambda case: client.infer(model, infer_request(case, meta)), tolerance)
        if not result["golden"]["passed"]:
            raise ProbeError("golden cases answered wrong: "
                             + "; ".join(result["golden"]["problems"][:3]))
    if params["requests"]:
        body = infer_request(cases[0], meta) if cases else zero_request(meta)
        result["latency"] = check_latency(client, model, body, params)
        if not result["latency"]["passed"]:
            raise ProbeError("latency " + "; ".join(result["latency"]["problems"]))


def run(module):
    """inference_health's whole run: check the options, probe, exit or fail."""
    params = module.params
    result = {"changed": False, "healthy": False, "live": False, "ready": False, "waited": 0.0}
    if params["requests"] < 0 or params["timeout"] < 0 or params["request_timeout"] < 1:
        module.fail_json(msg="requests and timeout must be 0 or more, request_timeout 1 or more")
    if not params["url"].startswith(("http://", "https://")):
        module.fail_json(msg=f"url must start with http:// or https://, got {params['url']!r}")
    where = params["model"] and f"model '{params['model']}' at {params['url']}" or params["url"]
    try:
        probe(params, result)
    except (GoldenError, ProbeError) as exc:
        module.fail_json(msg=f"{where}: {exc}", **result)
    result["healthy"] = True
    module.exit_json(**result)
