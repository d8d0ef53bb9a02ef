#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_info
short_description: Report the models in the host's model store
version_added: 0.1.0
description:
  - Lists the models in the store, their staged versions, the active (C(current)) and rollback
    (C(previous)) digests and sizes.
  - With O(verify=true), re-hashes every file of every version against its recorded digest,
    and every blob of the store against its name.
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.read_only
options:
  store_dir:
    description: The host model store.
    type: path
    default: /var/lib/edgeml/models
  name:
    description: Report only this model.
    type: str
  verify:
    description: Re-hash every file (reads every byte of the store).
    type: bool
    default: false
seealso:
  - module: edgeml.fleet.model_sync
"""

EXAMPLES = r"""
- name: What does the host serve?
  edgeml.fleet.model_info:
  register: store

- name: Full integrity check of the store
  edgeml.fleet.model_info:
    verify: true
  register: store
  failed_when: not store.intact
"""

RETURN = r"""
models:
  description:
    - Per model, its active and previous digests, its versions newest first (each with
      C(signatures), how many signatures the store keeps for it), and the versions
      rejected on this host (digest to reason, see O(edgeml.fleet.model_sync#module:state=rejected)).
  returned: always
  type: dict
  sample:
    fraud-detector:
      current: sha256:458cf12a0d2f46f58ace88450fc928105fe5db4d0198a288c452169c788849b8
      previous: sha256:c6a1eea8d4069a7d010487a47c7e743c91df27fa759880014f2ab186d31af0f8
      versions:
        - digest: sha256:458cf12a0d2f46f58ace88450fc928105fe5db4d0198a288c452169c788849b8
          ref: models/fraud-detector:1.1
          shape: artifact
          size: 36128
          source: https://core-registry:5000
          staged_at: 1795600000.0
          active: true
          signatures: 1
      rejected:
        sha256:20cd938a2ea64f612b3523bc9219130c6fc66cd09b394ea38437488c0b8898b2: "Health gate: golden cases answered wrong"
intact:
  description: False when O(verify=true) found a missing or altered file.
  returned: always
  type: bool
  sample: true
problems:
  description: What O(verify=true) found wrong, one line each.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils._store_report import run


def main():
    module = AnsibleModule(
        argument_spec={
            "store_dir": {"type": "path", "default": "/var/lib/edgeml/models"},
            "name": {"type": "str"},
            "verify": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
