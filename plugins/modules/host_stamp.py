#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_stamp
short_description: Record that a full run left an edge host converged
version_added: 0.1.0
description:
  - Writes the host's converge stamp at the end of a full run of C(edgeml.fleet.site) that left
    every model deployed or unchanged and healthy.
  - The stamp holds the desired-state fingerprint of that run (lookup
    C(edgeml.fleet.converge_fingerprint)) and the hashes of the files, directories, packages and
    account the roles manage, as they are now. It also holds each model's version, signer and
    health checks. M(edgeml.fleet.host_probe) compares the host with it on the next run.
  - The stamp is root's, mode 0600, and holds no secret (the token is read from O(token_file)).
author: edgeml.fleet developers (@edgeml)
options:
  path:
    description: The converge stamp. Its directory must exist.
    type: path
    default: /var/lib/edgeml/converged.json
  state:
    description: V(present) writes the stamp; V(absent) removes it (the next run walks in full).
    type: str
    choices: [present, absent]
    default: present
  fingerprint:
    description: The desired-state fingerprint of this run. Required with O(state=present).
    type: str
  files:
    description: Files whose content is watched (absent ones too).
    type: list
    elements: path
    default: []
  dirs:
    description: Directories whose mode and owner are watched.
    type: list
    elements: path
    default: []
  venv:
    description: The runtime's virtual environment; the names and versions of its packages are watched.
    type: path
  user:
    description: The service account; its uid, group and shell are watched.
    type: str
  group:
    description: The service account's group.
    type: str
  service:
    description: The inference service's systemd unit.
    type: str
    default: edgeml-inference.service
  url:
    description: The inference server, as the health gate reaches it on the host.
    type: str
    default: http://127.0.0.1:8080
  token_file:
    description: The server's bearer token file, read by the probe (the token is never stored).
    type: path
  health_requests:
    description: Timed inferences per model for the latency check.
    type: int
    default: 20
  health_providers:
    description: The execution providers the models may run on (the health gate's O(edgeml.fleet.inference_health#module:providers)).
    type: list
    elements: str
    default: []
  store_dir:
    description: The model store.
    type: path
    default: /var/lib/edgeml/models
  models:
    description:
      - The models served, each with C(name), C(digest) and maybe C(signer). The entries of
        C(model_deploy_report) fit.
    type: list
    elements: dict
    default: []
  health_checks:
    description:
      - What the health gate checks per model, as C(edgeml_models) gives it. Each entry has C(name)
        and may have C(acceptance) (golden cases), C(latency_p50_ms) and C(latency_p95_ms).
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what it would write.
  diff_mode:
    support: full
    description: The fingerprint before and after.
  idempotent:
    support: full
    description: A stamp that records the same state is left as it is.
seealso:
  - module: edgeml.fleet.host_probe
"""

EXAMPLES = r"""
- name: Record that this host is converged
  edgeml.fleet.host_stamp:
    fingerprint: "{{ lookup('edgeml.fleet.converge_fingerprint') }}"
    files: [/etc/edgeml/serve.yml, /etc/systemd/system/edgeml-inference.service]
    dirs: [/var/lib/edgeml/models]
    venv: /opt/edgeml/venv
    models:
      - {name: resnet, digest: "sha256:6e744f06fed0767497696c014e6dd806393f5bb44e85037d35d125211cb0e245"}

- name: Make the next run walk every host in full
  edgeml.fleet.host_stamp:
    state: absent
"""

RETURN = r"""
fingerprint:
  description: The fingerprint the stamp now records (null when removed).
  returned: always
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeml.fleet.plugins.module_utils._converge import new_stamp, read_stamp, stamp_body
from ansible_collections.edgeml.fleet.plugins.module_utils._files import write_file_atomic


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/var/lib/edgeml/converged.json"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "fingerprint": {"type": "str"},
            "files": {"type": "list", "elements": "path", "default": []},
            "dirs": {"type": "list", "elements": "path", "default": []},
            "venv": {"type": "path"},
            "user": {"type": "str"},
            "group": {"type": "str"},
            "service": {"type": "str", "default": "edgeml-inference.service"},
            "url": {"type": "str", "default": "http://127.0.0.1:8080"},
            "token_file": {"type": "path"},
            "health_requests": {"type": "int", "default": 20},
            "store_dir": {"type": "path", "default": "/var/lib/edgeml/models"},
            "models": {"type": "list", "elements": "dict", "default": []},
            "health_checks": {"type": "list", "elements": "dict", "default": []},
            "health_providers": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[("state", "present", ["fingerprint"])],
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    old = read_stamp(path)
    before = (old or {}).get("fingerprint")
    if params["state"] == "absent":
        changed = os.path.lexists(path)
        if changed and not module.check_mode:
            os.unlink(path)
        module.exit_json(changed=changed, fingerprint=None,
                         diff={"before": {"fingerprint": before}, "after": {"fingerprint": None}})
    for model in params["models"]:
        if not isinstance(model.get("name"), str) or not isinstance(model.get("digest"), str):
            module.fail_json(msg=f"models: each needs a name and a digest, got {model!r}")
    if not os.path.isdir(os.path.dirname(path)):
        module.fail_json(msg=f"cannot write the converge stamp {path}: its directory does not exist "
                             "(run the edgeml.fleet.edge_host role first)")
    body = json.loads(json.dumps(stamp_body(params), sort_keys=True))  # as it reads back
    changed = old is None or {k: v for k, v in old.items() if k != "recorded_at"} != body
    if changed and not module.check_mode:
        write_file_atomic(path, json.dumps(new_stamp(body), sort_keys=True, indent=1).encode(), mode=0o600)
    module.exit_json(changed=changed, fingerprint=params["fingerprint"],
                     diff={"before": {"fingerprint": before}, "after": {"fingerprint": params["fingerprint"]}})


if __name__ == "__main__":
    main()
