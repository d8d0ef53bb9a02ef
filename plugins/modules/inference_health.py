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
  - edgeml.fleet.v2_server
options:
  model:
    description: The model to probe; without it only the server's live and ready probes run.
    type: str
  version:
    description: The version the model must serve (for the edgeml server, the manifest digest
      C(sha256:...)); waits for it until O(timeout).
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
    description: SLO for the median latency of one request, as a client sees it over a kept-alive
      connection (the timed requests share one connection, after one untimed request opened it).
    type: float
  latency_p95_ms:
    description: SLO for the 95th percentile latency.
    type: float
  providers:
    description:
      - The execution providers the model may run on, for example V([CUDAExecutionProvider]) on a
        host with an NVIDIA GPU. The edgeml server says which provider runs each model (the first
        of C(execution_providers) in its metadata); one not in this list fails the gate, so an
        accelerator build that silently fell back to CPU is caught. Empty checks nothing.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for readiness and for O(version).
    type: int
    default: 60
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
  description: Client-side latency of O(requests) inferences over one kept-alive connection, in
    milliseconds, with the SLO.
  returned: when latency was measured
  type: dict
  sample: {p50_ms: 0.9, p95_ms: 1.4, max_ms: 2.1, samples: 20, slo_p50_ms: null, slo_p95_ms: 20, passed: true,
           connection: keep-alive}
execution_provider:
  description: The execution provider the server runs the model on (null when it does not say).
  returned: when O(model) is given and the server answered
  type: str
  sample: CPUExecutionProvider
provider_ok:
  description: Whether the execution provider in use is one of O(providers) (false fails the gate;
    the host, not the model version, is at fault).
  returned: when O(providers) is given and the model was probed
  type: bool
waited:
  description: Seconds spent waiting for readiness and the expected version.
  returned: always
  type: float
  sample: 0.4
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils._health import run
from ansible_collections.edgeml.fleet.plugins.module_utils._v2client import SERVER_ARGS


def main():
    module = AnsibleModule(
        argument_spec={
            **SERVER_ARGS,
            "model": {"type": "str"},
            "version": {"type": "str"},
            "golden": {"type": "list", "elements": "dict"},
            "golden_file": {"type": "path"},
            "tolerance": {"type": "float"},
            "requests": {"type": "int", "default": 20},
            "latency_p50_ms": {"type": "float"},
            "latency_p95_ms": {"type": "float"},
            "providers": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 60},
        },
        required_by={"version": "model", "golden": "model", "golden_file": "model"},
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
