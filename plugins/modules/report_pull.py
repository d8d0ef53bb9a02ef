#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: report_pull
short_description: Collect the result reports pull-mode hosts published to the registry
version_added: 0.1.0
description:
  - The controller side of pull mode's way home. For each host of O(hosts), reads the artifact
    V(REPOSITORY_PREFIX/HOST:latest) (artifact type V(application/vnd.edgeml.report.v1), pushed
    by the host with M(edgeml.fleet.bundle_push)) and writes its one file, C(HOST.json), to
    O(dest) - the results directory C(edgeml.fleet.summary) and C(edgeml.fleet.monitor) read as
    C(edgeml_results_dir), as they read reports a technician carried home.
  - A host's artifact is hostile input. It must hold exactly one file, named after that host,
    of at most O(max_bytes); anything else is left out and listed in RV(refused). The report's
    content is checked by the summary as any carried report is (its host, its site).
  - One HEAD request per host when its report has not changed since the last run.
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
attributes:
  check_mode:
    support: full
    description: Says which reports are new; writes nothing.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  idempotent:
    support: full
    description: Unchanged reports are not fetched or written again.
options:
  registry:
    description: The registry the hosts push to, V(https://HOST[:PORT]), with pull rights on the reports.
    type: str
    required: true
  hosts:
    description: The hosts whose reports to collect (inventory names, as the hosts push them).
    type: list
    elements: str
    required: true
  repository_prefix:
    description: The repositories' prefix; a host's report is in V(PREFIX/HOST).
    type: str
    default: reports
  dest:
    description: The results directory (created when missing). C(.digests.json) in it records what was fetched.
    type: path
    required: true
  max_bytes:
    description: The largest report taken.
    type: int
    default: 16777216
seealso:
  - module: edgeml.fleet.bundle_push
  - module: edgeml.fleet.bundle_pull
"""

EXAMPLES = r"""
- name: Collect the pull-mode hosts' reports
  delegate_to: localhost
  run_once: true
  edgeml.fleet.report_pull:
    registry: https://registry.example.com
    hosts: "{{ groups['mode_pull'] }}"
    dest: /srv/edgeml/results
"""

RETURN = r"""
reports:
  description: The hosts whose report is in O(dest) now, with its digest and whether it is new.
  returned: success
  type: list
  elements: dict
  sample: [{host: edge-p1, digest: "sha256:…", changed: true}]
missing:
  description: Hosts that have published no report.
  returned: success
  type: list
  elements: str
refused:
  description: Hosts whose artifact was left out, with why.
  returned: success
  type: list
  elements: dict
"""

import json
import os
import shutil
import tempfile

from ansible_collections.edgeml.fleet.plugins.module_utils._artifact import (
    REPORT_TYPE, fetch_manifest, pull, tag_digest)
from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._files import read_json_dict, write_file_atomic
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    REPO_RE, NotFound, OCIError, Unreachable)

RECORD = ".digests.json"


def collect(module, client, host, repo, dest, known):
    """Fetch host's report into dest/HOST.json -> its digest, or None when unchanged."""
    digest = tag_digest(client, repo, "latest")
    if digest == known and os.path.isfile(os.path.join(dest, f"{host}.json")):
        return digest, False
    if module.check_mode:
        return digest, True
    digest, files = fetch_manifest(client, repo, digest, REPORT_TYPE, module.params["max_bytes"])
    if [name for name, _digest, _size in files] != [f"{host}.json"]:
        raise OCIError(f"{repo}@{digest}: a report artifact holds one file, {host}.json; this one "
                       f"holds {', '.join(name for name, _d, _s in files[:5]) or 'none'}")
    work = tempfile.mkdtemp(prefix=".pull-", dir=dest)
    try:
        pull(client, repo, files, os.path.join(work, "report"), os.path.join(work, "blobs"),
             module.params["retries"])
        os.chmod(os.path.join(work, "report", f"{host}.json"), 0o640)
        os.replace(os.path.join(work, "report", f"{host}.json"), os.path.join(dest, f"{host}.json"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return digest, True


def main():
    module = RegistryModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "hosts": {"type": "list", "elements": "str", "required": True},
            "repository_prefix": {"type": "str", "default": "reports"},
            "dest": {"type": "path", "required": True},
            "max_bytes": {"type": "int", "default": 16 << 20},
        },
        endpoints=False,
        supports_check_mode=True,
    )
    params = module.params
    dest = params["dest"]
    if not module.check_mode:
        os.makedirs(dest, 0o750, exist_ok=True)
    record = read_json_dict(os.path.join(dest, RECORD))
    client = module.clients()[0]
    result = {"changed": False, "reports": [], "missing": [], "refused": []}
    for host in sorted(set(params["hosts"])):
        repo = f"{params['repository_prefix']}/{host}"
        if "/" in host or not REPO_RE.match(repo):
            result["refused"].append({"host": host, "msg": f"{repo!r} is not a valid repository "
                                                           "name for one host's report"})
            continue
        try:
            digest, changed = collect(module, client, host, repo, dest, record.get(host))
        except NotFound:
            result["missing"].append(host)
            continue
        except Unreachable as exc:
            module.fail_from(exc, **result)
        except OCIError as exc:
            result["refused"].append({"host": host, "msg": exc.msg})
            continue
        record[host] = digest
        result["reports"].append({"host": host, "digest": digest, "changed": changed})
        result["changed"] |= changed
    if result["changed"] and not module.check_mode:
        write_file_atomic(os.path.join(dest, RECORD), json.dumps(record, sort_keys=True).encode())
    for entry in result["refused"]:
        module.warn(f"report of {entry['host']} left out: {entry['msg']}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
