#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_probe
short_description: Read an edge host's whole state at once, against its converge stamp
version_added: 0.1.0
description:
  - The fast path of C(edgeml.fleet.site). One call reads what the last full run recorded in the
    host's converge stamp (see M(edgeml.fleet.host_stamp)) and the host as it is now. That covers
    the files and directories the roles manage, the runtime's installed packages, the service
    account and the inference service. It also reads each model's current version and runs the
    health gate's checks on it (ready, the expected version, golden cases, latency SLOs).
  - The controller compares the answer with the desired state (filter
    C(edgeml.fleet.converge_verdict)). A host that matches and is healthy skips the full walk.
  - A stamp that is missing, unreadable, not root's or writable by others counts as no stamp.
author: edgeml.fleet developers (@edgeml)
options:
  path:
    description: The converge stamp.
    type: path
    default: /var/lib/edgeml/converged.json
extends_documentation_fragment:
  - edgeml.fleet.read_only
seealso:
  - module: edgeml.fleet.host_stamp
"""

EXAMPLES = r"""
- name: Read the host's state in one probe
  edgeml.fleet.host_probe:
  register: probe

- name: Show what changed since the last full run
  ansible.builtin.debug:
    var: probe.drift
"""

RETURN = r"""
stamp:
  description: Whether a sound converge stamp was found.
  returned: always
  type: bool
fingerprint:
  description: The desired-state fingerprint the last full run recorded (null without a stamp).
  returned: always
  type: str
recorded_at:
  description: When the stamp was written (UTC).
  returned: when a stamp was found
  type: str
drift:
  description: What differs from the stamp, one line each; empty when the host is as it was left.
  returned: always
  type: list
  elements: str
  sample: ["file /etc/edgeml/serve.yml: sha256:1f… when converged, sha256:9c… now"]
models:
  description: Each model of the stamp, with its current version and health.
  returned: always
  type: dict
  sample:
    resnet: {current: "sha256:6e74…", signer: "key release", healthy: true, p50_ms: 3.1, p95_ms: 4.0}
runtime:
  description: The runtime facts the fleet report shows (arch, Python, ONNX Runtime, service).
  returned: always
  type: dict
  sample:
    arch: x86_64
    python: 3.11.2
    onnxruntime: {installed: true, version: 1.32.0}
    service: {name: edgeml-inference.service, active: active, enabled: enabled}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeml.fleet.plugins.module_utils._converge import probe


def main():
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "default": "/var/lib/edgeml/converged.json"}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **probe(module, module.params["path"]))


if __name__ == "__main__":
    main()
