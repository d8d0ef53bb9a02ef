#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: runtime_facts
short_description: Gather what an edge host offers for inference
version_added: 0.1.0
description:
  - CPU architecture and the instruction sets inference cares about (AVX2, AVX-512, NEON), cores,
    memory, free disk at the model store, accelerators (NVIDIA through its device nodes and
    C(nvidia-smi), Jetson through C(/etc/nv_tegra_release), Intel GPUs through
    C(/dev/dri/renderD*)), the Python version, the installed ONNX Runtime with its execution
    providers, and the state of the inference service.
  - Returned as the fact C(edgeml_runtime).
author: edgeml.fleet developers (@edgeml)
options:
  store_dir:
    description: The model store; free disk is measured there (or at its nearest existing parent).
    type: path
    default: /var/lib/edgeml/models
  venv:
    description: The runtime's virtual environment; its Python reports the ONNX Runtime.
    type: path
    default: /opt/edgeml/venv
  service:
    description: The inference service's systemd unit.
    type: str
    default: edgeml-inference.service
  sysroot:
    description:
      - Where to find C(/proc), C(/sys), C(/dev) and C(/etc). For chroots and for tests on faked
        device files.
    type: path
    default: /
  nvidia_smi:
    description: The C(nvidia-smi) command (searched on PATH when not absolute).
    type: str
    default: nvidia-smi
extends_documentation_fragment:
  - edgeml.fleet.read_only
"""

EXAMPLES = r"""
- name: Learn what the host offers
  edgeml.fleet.runtime_facts:

- name: Pick the ONNX Runtime build from what was found
  ansible.builtin.debug:
    msg: "{{ 'onnxruntime-gpu' if ansible_facts.edgeml_runtime.accelerators.nvidia.present else 'onnxruntime' }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts about the host's inference capabilities.
  returned: always
  type: dict
  contains:
    edgeml_runtime:
      description: The facts.
      type: dict
      returned: always
      sample:
        arch: x86_64
        cpu_flags: [avx2, avx512f]
        cores: 8
        memory_mb: 15890
        memory_available_mb: 12011
        free_disk_mb: 80211
        disk_measured_at: /var/lib/edgeml/models
        python: 3.11.2
        accelerators:
          nvidia: {present: false, devices: [], gpus: []}
          jetson: {present: false, release: null}
          intel_gpu: {present: false, render_nodes: []}
          kind: none
        onnxruntime: {installed: true, version: 1.32.0, providers: [CPUExecutionProvider]}
        service: {name: edgeml-inference.service, active: active, sub: running, enabled: enabled}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeml.fleet.plugins.module_utils._host_facts import run


def main():
    module = AnsibleModule(
        argument_spec={
            "store_dir": {"type": "path", "default": "/var/lib/edgeml/models"},
            "venv": {"type": "path", "default": "/opt/edgeml/venv"},
            "service": {"type": "str", "default": "edgeml-inference.service"},
            "sysroot": {"type": "path", "default": "/"},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
