# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: host_platform
short_description: The platform an edge host needs software for
version_added: 0.1.0
description:
  - From a host's variables, its architecture, Python version and accelerator - what picks the
    runtime's wheels. Facts from M(edgeml.fleet.runtime_facts) win over the inventory's
    C(edgeml_arch), C(edgeml_python_version) and C(edgeml_accelerator), whose defaults are
    V(x86_64), V(3.11) and V(none).
options:
  _input:
    description: The host's variables (C(hostvars[host])).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Platforms of the disconnected hosts
  ansible.builtin.debug:
    msg: "{{ groups['connectivity_disconnected'] | map('extract', hostvars) | map('edgeml.fleet.host_platform') | unique }}"
"""

RETURN = r"""
_value:
  description: C({arch, python, accelerator}).
  type: dict
"""


def host_platform(hostvars):
    facts = (hostvars.get("ansible_facts") or {}).get("edgeml_runtime") or {}
    python = str(facts.get("python") or hostvars.get("edgeml_python_version") or "3.11")
    return {"arch": str(facts.get("arch") or hostvars.get("edgeml_arch") or "x86_64"),
            "python": ".".join(python.split(".")[:2]),
            "accelerator": str(hostvars.get("edgeml_accelerator") or "none")}


class FilterModule:
    def filters(self):
        return {"host_platform": host_platform}
