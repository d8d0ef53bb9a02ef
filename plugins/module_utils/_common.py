# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the registry options every registry-facing module shares.

An endpoint of registries may be a dict with its own username and password. AnsibleModule
hides no_log options, but not values inside raw list elements: RegistryModule adds every such
password to no_log_values as soon as the arguments are read, so it is masked in the logged
invocation, in results and in messages alike.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import OCIError
from ansible_collections.edgeml.fleet.plugins.module_utils._registry import make_client

REGISTRY_ARGS = {
    "registries": {"type": "list", "elements": "raw"},
    "username": {"type": "str", "fallback": (env_fallback, ["EDGEML_REGISTRY_USERNAME"])},
    "password": {"type": "str", "no_log": True,
                 "fallback": (env_fallback, ["EDGEML_REGISTRY_PASSWORD"])},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "timeout": {"type": "int", "default": 30},
    "retries": {"type": "int", "default": 3},
}


def endpoint_passwords(endpoints):
    """The passwords inside endpoint dicts (a list of endpoints, or one endpoint)."""
    endpoints = endpoints if isinstance(endpoints, list) else [endpoints]
    return {e["password"] for e in endpoints
            if isinstance(e, dict) and isinstance(e.get("password"), str) and e["password"]}


class RegistryModule(AnsibleModule):
    """AnsibleModule with the shared registry options and one way to fail."""

    def __init__(self, argument_spec, endpoints=True, **kwargs):
        spec = dict(REGISTRY_ARGS)
        if not endpoints:  # modules that name one registry their own way
            del spec["registries"]
        spec.update(argument_spec)
        super().__init__(argument_spec=spec, **kwargs)
        if self.params["timeout"] <= 0:
            self.fail_json(msg=f"timeout must be more than 0 seconds, got {self.params['timeout']}")
        if self.params["retries"] < 0:
            self.fail_json(msg=f"retries must be 0 or more, got {self.params['retries']}")

    def _load_params(self):
        """Read the arguments, then mask endpoint passwords before anything logs or returns them."""
        super()._load_params()
        for option in ("registries", "registry"):
            self.no_log_values.update(endpoint_passwords(self.params.get(option)))

    def clients(self):
        """One client per endpoint, in order (mirror first, then core).

        An endpoint dict's own username/password are used for it; username and password apply
        to the endpoints that name none.
        """
        endpoints = self.params.get("registries") or []
        if self.params.get("registry"):
            endpoints = [self.params["registry"]]
        try:
            return [make_client(e, self.params["username"], self.params["password"],
                                self.params["validate_certs"], self.params["ca_path"],
                                self.params["timeout"]) for e in endpoints]
        except OCIError as exc:
            self.fail_json(msg=exc.msg)
            raise  # not reached

    def fail_from(self, exc, **result):
        """Fail with the message of an EdgemlError (registry, store, bundle) and its traceback."""
        msg = exc.msg if isinstance(exc, EdgemlError) else f"{type(exc).__name__}: {exc}"
        self.fail_json(msg=msg, exception=traceback.format_exc(), **result)
