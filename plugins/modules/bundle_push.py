#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_push
short_description: Publish a directory (a signed offline bundle, a result report) as an OCI artifact
version_added: 0.1.0
description:
  - Pushes every regular file under O(path) to O(registry) as one OCI artifact at O(repository)
    and O(tag) - an image manifest with the artifact type O(artifact_type), the empty config and
    one layer per file, titled with the file's path relative to O(path).
  - The same files always give the same manifest digest. When the tag already names it (one
    C(HEAD) request), nothing is sent and the task reports no change; blobs the registry holds
    are not sent again, so a new bundle costs only its new files.
  - Pull mode uses it twice. The controller publishes each site's signed bundle
    (V(bundles/SITE)), which the site's hosts fetch with M(edgeml.fleet.bundle_pull); a host
    publishes its result report (V(reports/HOST), artifact type
    V(application/vnd.edgeml.report.v1)) for C(edgeml.fleet.summary) to read.
  - The push moves files, it does not vouch for them. A bundle's trust is its signature, checked
    on the host by the bundle's own C(bootstrap.sh).
  - A link, a special file or a file name outside letters, digits and C(._+@,=~-) fails the task
    before anything is sent (a pull would refuse it).
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
attributes:
  check_mode:
    support: full
    description: Computes the digest and says whether the tag would change; sends nothing.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  idempotent:
    support: full
    description: The same files again send nothing and change nothing.
options:
  registry:
    description: The registry, V(https://HOST[:PORT]). Needs push rights on O(repository).
    type: str
    required: true
  repository:
    description: The artifact's repository, for example V(bundles/site-a) or V(reports/edge-a1).
    type: str
    required: true
  tag:
    description: The tag to point at the artifact.
    type: str
    default: latest
  path:
    description: The directory whose files are pushed.
    type: path
    required: true
  artifact_type:
    description: The manifest's C(artifactType).
    type: str
    default: application/vnd.edgeml.bundle.v1
    choices: [application/vnd.edgeml.bundle.v1, application/vnd.edgeml.report.v1]
seealso:
  - module: edgeml.fleet.bundle_pull
  - module: edgeml.fleet.bundle_seal
"""

EXAMPLES = r"""
- name: Publish site-a's signed bundle for its pull-mode hosts
  delegate_to: localhost
  edgeml.fleet.bundle_push:
    registry: https://registry.example.com
    username: "{{ edgeml_registry_username }}"
    password: "{{ edgeml_registry_password }}"
    repository: bundles/site-a
    path: /srv/bundles/site-a
"""

RETURN = r"""
digest:
  description: The artifact's manifest digest (what the tag names after the push).
  returned: success
  type: str
  sample: sha256:3f1e9c0a2b8d4e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7
files:
  description: How many files the artifact holds.
  returned: success
  type: int
bytes_sent:
  description: Bytes uploaded in this run (blobs the registry had are not sent).
  returned: success
  type: int
"""

import os

from ansible_collections.edgeml.fleet.plugins.module_utils._artifact import check_ref, push
from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError


def main():
    module = RegistryModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "repository": {"type": "str", "required": True},
            "tag": {"type": "str", "default": "latest"},
            "path": {"type": "path", "required": True},
            "artifact_type": {"type": "str", "default": "application/vnd.edgeml.bundle.v1",
                              "choices": ["application/vnd.edgeml.bundle.v1",
                                          "application/vnd.edgeml.report.v1"]},
        },
        endpoints=False,
        supports_check_mode=True,
    )
    params = module.params
    if not os.path.isdir(params["path"]):
        module.fail_json(msg=f"path {params['path']}: not a directory")
    client = module.clients()[0]
    try:
        check_ref(params["repository"], params["tag"])
        digest, changed, sent, files = push(client, params["repository"], params["tag"],
                                            params["path"], params["artifact_type"],
                                            check_mode=module.check_mode)
    except EdgemlError as exc:
        module.fail_from(exc)
    module.exit_json(changed=changed, digest=digest, files=files, bytes_sent=sent)


if __name__ == "__main__":
    main()
