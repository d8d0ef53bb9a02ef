#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_shadow
short_description: Judge a shadow version on live traffic (the promotion gate)
version_added: 0.1.0
description:
  - The edgeml inference server can run a candidate version as a I(shadow) beside the version in
    service (C(shadow) in its configuration; M(edgeml.fleet.model_deploy) role variable
    C(model_deploy_shadow)). Every answered request is run on the candidate too and the answers
    are compared; clients only ever get the serving version's answer.
  - This module waits until the candidate has been compared on O(min_requests) requests, then
    passes it when it agreed on at least O(min_agreement) percent of them and, with
    O(latency_p95_ms), its 95th percentile inference time is within that budget.
  - Fails, saying why, when the candidate does not pass, when too few requests arrive within
    O(timeout) (C(judged) is then false; the traffic, not the version, was lacking), or when the
    server has no such shadow.
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.read_only
  - edgeml.fleet.v2_server
options:
  model:
    description: The model whose shadow is judged.
    type: str
    required: true
  candidate:
    description: The candidate's version (C(sha256:<hex>)); the server must be comparing this one.
    type: str
  serving:
    description: The serving version (C(sha256:<hex>)) the candidate must be compared with.
    type: str
  shadow_id:
    description:
      - The judging's name, as written into serve.yml (C(shadow_id)); the server's figures must be
        this judging's, not those of another deploy that changed the shadow meanwhile.
    type: str
  min_requests:
    description: Requests the candidate must have been compared on before it is judged.
    type: int
    default: 200
  min_agreement:
    description: Percent of those requests on which both versions must agree (labels exactly,
      scores within the server's C(shadow_tolerance)).
    type: float
    default: 99.0
  latency_p95_ms:
    description: Budget for the candidate's 95th percentile inference time, as the server measures
      it (no network in it); none checks nothing.
    type: float
  timeout:
    description: Seconds to wait for O(min_requests) requests.
    type: int
    default: 600
  poll_interval:
    description: Seconds between two readings of the server's figures.
    type: float
    default: 2.0
notes:
  - Runs on the edge host with only the Python standard library.
  - Requests the candidate could not keep up with are not shadowed (C(skipped)); they are not
    counted either way.
seealso:
  - module: edgeml.fleet.inference_health
  - module: edgeml.fleet.model_drift
"""

EXAMPLES = r"""
- name: Promote only a candidate that agreed on 99 % of 500 live requests within 20 ms p95
  edgeml.fleet.model_shadow:
    model: fraud-detector
    candidate: "sha256:4f2c..."
    min_requests: 500
    min_agreement: 99
    latency_p95_ms: 20
  register: shadow
"""

RETURN = r"""
passed:
  description: Whether the candidate passed.
  returned: always
  type: bool
judged:
  description: Whether enough requests were compared to judge it.
  returned: always
  type: bool
message:
  description: The verdict in words (when it fails, the failure's C(msg) says why).
  returned: when passed
  type: str
  sample: the candidate agreed on 99.6 % of 500 requests (p95 1.2 ms, serving 0.9 ms)
requests:
  description: Requests compared.
  returned: when the server answered
  type: int
agreed:
  description: Requests on which both versions agreed.
  returned: when the server answered
  type: int
agreement_percent:
  description: C(agreed) of C(requests), in percent.
  returned: when the server answered
  type: float
errors:
  description: Requests the candidate failed on (counted as disagreements).
  returned: when the server answered
  type: int
skipped:
  description: Requests not shadowed because the candidate was behind.
  returned: when the server answered
  type: int
candidate_p95_ms:
  description: The candidate's 95th percentile inference time.
  returned: when the server answered
  type: float
serving_p95_ms:
  description: The serving version's 95th percentile inference time on the same requests.
  returned: when the server answered
  type: float
last_disagreement:
  description: What the latest disagreement was (C(answers differ), or the candidate's error).
  returned: when the server answered
  type: str
"""

import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils._shadow import ShadowError, figures, judge
from ansible_collections.edgeml.fleet.plugins.module_utils._store import StoreError, check_model_name
from ansible_collections.edgeml.fleet.plugins.module_utils._v2client import SERVER_ARGS, ProbeError, V2Client


class Overdue(Exception):
    pass


def _overdue(_signum, _frame):
    raise Overdue()


def _reading(module, client):
    """(verdict or None while waiting, figures or None, message) from one look at the server.
    Until the server has loaded this candidate beside this serving version (a reload takes a
    moment) there is nothing to judge yet; a candidate that failed to load fails at once."""
    params, model = module.params, module.params["model"]
    try:
        status, report = client.call(f"/v2/models/{model}/shadow")
    except ProbeError as exc:
        module.fail_json(msg=f"model {model}: cannot read the server's shadow figures: {exc}",
                         passed=False, judged=False)
    if status != 200:
        why = report.get("error") if isinstance(report, dict) else report
        if status != 404 or (isinstance(report, dict) and report.get("shadow_failed")):
            module.fail_json(msg=f"model {model}: the server answered HTTP {status} for its shadow: {why}",
                             passed=False, judged=False)
        return None, None, f"the server has no shadow of {model} ({why})"
    try:
        found = figures(report, model, params["candidate"], params["serving"], params["shadow_id"])
    except ShadowError as exc:
        return None, None, str(exc)
    passed, message = judge(found, params["min_requests"], params["min_agreement"],
                            params["latency_p95_ms"])
    return passed, found, message


def run(module):
    params = module.params
    model = params["model"]
    try:
        check_model_name(model)
    except StoreError as exc:
        module.fail_json(msg=str(exc), passed=False, judged=False)
    budget = params["latency_p95_ms"]
    if params["min_requests"] < 1 or not 0 <= params["min_agreement"] <= 100 \
            or (budget is not None and not 0 < budget < float("inf")):
        module.fail_json(msg="min_requests must be 1 or more, min_agreement between 0 and 100 and "
                             "latency_p95_ms a number above 0", passed=False, judged=False)
    client = V2Client(params)
    # A whole-run deadline: request_timeout bounds each socket read, not a server that sends an
    # answer a byte at a time.
    signal.signal(signal.SIGALRM, _overdue)
    signal.alarm(params["timeout"] + 2 * params["request_timeout"] + 1)
    deadline = time.monotonic() + params["timeout"]
    try:
        while True:
            passed, found, message = _reading(module, client)
            if passed is not None or time.monotonic() >= deadline:
                break
            time.sleep(max(0.1, params["poll_interval"]))
    except Overdue:
        module.fail_json(msg=f"model {model}: the server's shadow figures did not arrive within "
                             f"the timeout of {params['timeout']} s", passed=False, judged=False)
    signal.alarm(0)
    if found is None:  # never saw the candidate: not loaded yet at the deadline, or another one
        module.fail_json(msg=f"model {model}: {message} after {params['timeout']} s", passed=False, judged=False)
    if passed is None:
        module.fail_json(msg=f"model {model}: not judged: only {message} after {params['timeout']} s "
                             "(too little traffic; raise the timeout or lower min_requests)",
                         passed=False, judged=False, **found)
    if not passed:
        module.fail_json(msg=f"model {model}: the shadow version did not pass: {message}",
                         passed=False, judged=True, **found)
    module.exit_json(changed=False, passed=True, judged=True, message=message, **found)


def main():
    module = AnsibleModule(
        argument_spec={
            **SERVER_ARGS,
            "model": {"type": "str", "required": True},
            "candidate": {"type": "str"},
            "serving": {"type": "str"},
            "shadow_id": {"type": "str"},
            "min_requests": {"type": "int", "default": 200},
            "min_agreement": {"type": "float", "default": 99.0},
            "latency_p95_ms": {"type": "float"},
            "timeout": {"type": "int", "default": 600},
            "poll_interval": {"type": "float", "default": 2.0},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
