# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: converge_fingerprint
short_description: One hash of everything that decides what a full run does to a host
version_added: 0.1.0
description:
  - The desired state of a host as one digest, for the fast path of C(edgeml.fleet.site). A full
    run records it in the host's converge stamp (M(edgeml.fleet.host_stamp)); the next run skips
    the host only when the digest is still the same (and the host still matches the stamp).
  - It covers the collection's own code (roles, plugins, playbooks, the inference server) and
    every variable the host sets that the roles read. That means each role's options (their
    argument specs) and the fleet's inventory variables (the models, store, account, trust,
    accelerator). Role defaults are part of the code.
  - Run controls are left out (canaries, batches, report paths, maintenance windows), as are
    registry endpoints and credentials. They change how a run goes, not what it leaves on the host.
options: {}
"""

EXAMPLES = r"""
- name: The desired state of this host, as one digest
  ansible.builtin.debug:
    msg: "{{ lookup('edgeml.fleet.converge_fingerprint') }}"
"""

RETURN = r"""
_raw:
  description: One string, C(sha256:<hex>).
  type: list
  elements: str
"""

import functools
import hashlib
import json
import os

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODE_DIRS = ("roles", "plugins", "playbooks", "server")
# The fleet's variables that shape a host (docs/inventory.md), besides the roles' own options.
INVENTORY_VARIABLES = ("edgeml_models", "edgeml_model_trust", "edgeml_model_trust_revoked",
                       "edgeml_accelerator", "edgeml_arch", "edgeml_python_version",
                       "edgeml_connectivity")
# Role options that steer a run, not the state it leaves (and endpoints and credentials).
RUN_CONTROLS = frozenset(("model_deploy_registries", "model_deploy_username", "model_deploy_password",
                          "model_deploy_registry_ca_path", "model_deploy_controller_registry",
                          "model_deploy_controller_ca_path", "model_deploy_fail_host"))


@functools.lru_cache(maxsize=None)
def code_key():
    """sha256 over the collection's code, file names included (computed once per process)."""
    digest = hashlib.sha256()
    for top in CODE_DIRS:
        for root, dirs, files in sorted(os.walk(os.path.join(COLLECTION, top))):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if not f.endswith(".pyc")):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, COLLECTION).encode() + b"\0")
                with open(path, "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def role_options():
    """Every option of every role's argument specs, minus the run controls."""
    names = set()
    roles = os.path.join(COLLECTION, "roles")
    for role in sorted(os.listdir(roles)):
        path = os.path.join(roles, role, "meta", "argument_specs.yml")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as handle:
            specs = (yaml.safe_load(handle) or {}).get("argument_specs") or {}
        for entry in specs.values():
            names.update((entry or {}).get("options") or {})
    return frozenset(names - RUN_CONTROLS)


def fingerprint(code, values):
    payload = json.dumps({"code": code, "variables": values}, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        values = {}
        for name in sorted(role_options().union(INVENTORY_VARIABLES)):
            if name not in variables:
                continue
            try:
                values[name] = self._templar.template(variables[name])
            except AnsibleError:
                # a value built on a role default the probe's play does not load: its text
                values[name] = variables[name]
        return [fingerprint(code_key(), json.loads(json.dumps(values, sort_keys=True, default=str)))]
