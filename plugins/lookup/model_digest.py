# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: model_digest
short_description: Resolve model image tags to digests on the controller
version_added: 0.1.0
description:
  - Asks a registry which manifest digest a tag points at. Tags move; digests don't.
  - Resolve each tag B(once per run) in a C(run_once) task and give every host the digest, so
    every host pulls the same version even if the tag moves during the rollout.
  - For an image index (several platforms) the index digest is returned; each host picks its
    platform from it.
options:
  _terms:
    description: References, C(REPOSITORY:TAG) (or C(REPOSITORY@DIGEST), returned as it is).
    required: true
    type: list
    elements: str
  registry:
    description:
      - Registry the controller asks, V(https://HOST[:PORT]). The controller may reach the registry
        by another address than the hosts do.
    type: str
    required: true
  username:
    description: Registry user name.
    type: str
    env:
      - name: EDGEML_REGISTRY_USERNAME
  password:
    description: Registry password or token.
    type: str
    env:
      - name: EDGEML_REGISTRY_PASSWORD
  validate_certs:
    description: Verify the registry's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: CA bundle for the registry's certificate.
    type: path
  timeout:
    description: Seconds to wait for the registry.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Resolve every model tag once, for all hosts of the play
  run_once: true
  ansible.builtin.set_fact:
    edgeml_model_digests: >-
      {{ dict(edgeml_models | map(attribute='ref')
              | zip(query('edgeml.fleet.model_digest', *(edgeml_models | map(attribute='ref')),
                          registry=edgeml_controller_registry))) }}
"""

RETURN = r"""
_raw:
  description: One digest per reference, C(sha256:...).
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.edgeml.fleet.plugins.module_utils._oci import OCIError, parse_ref
from ansible_collections.edgeml.fleet.plugins.module_utils._registry import RegistryClient


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        client = RegistryClient(self.get_option("registry"), self.get_option("username"),
                                self.get_option("password"), self.get_option("validate_certs"),
                                self.get_option("ca_path"), self.get_option("timeout"))
        digests = []
        for term in terms:
            try:
                repo, tag, digest = parse_ref(term)
                if not digest:
                    digest = client.get_manifest(repo, tag)[2]
            except OCIError as exc:
                raise AnsibleLookupError(f"model_digest: {term}: {exc.msg}") from None
            digests.append(digest)
        return digests
