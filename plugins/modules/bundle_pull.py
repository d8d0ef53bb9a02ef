#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_pull
short_description: Fetch a signed offline bundle published as an OCI artifact, and verify it
version_added: 0.1.0
description:
  - The host side of pull mode. Asks O(registry) (normally the site's mirror) for the digest of
    O(repository):O(tag) with one C(HEAD) request; when it is the bundle already at O(dest),
    that is all.
  - Otherwise fetches the artifact's manifest by that digest (it must hash to it), checks every
    file name (a plain relative path; no C(..), no absolute path, no name twice), the number of
    files and their total size against O(max_bytes) B(before) fetching anything, then downloads
    each file as a blob checked against its digest while it streams. An interrupted download
    resumes at the next run; files an earlier bundle had are not fetched again.
  - The new bundle is assembled next to O(dest) and verified as M(edgeml.fleet.bundle_verify)
    does - the signature over C(SHA256SUMS) against O(allowed_signers) (the host's own trusted
    signers, never a file from the bundle), every file listed and matching, nothing unlisted.
    Only then does it replace O(dest). A bundle that fails is removed, O(dest) stays as it was,
    and its digest is remembered so that it is not fetched again (the task fails each time with
    the reason, until the tag moves on).
  - Applying the bundle is the job of its C(bootstrap.sh), as for a technician's copy; the
    playbook C(edgeml.fleet.pull) runs both.
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
attributes:
  check_mode:
    support: full
    description: Says whether a new bundle is waiting (one C(HEAD) request); fetches nothing.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  idempotent:
    support: full
    description: With the tag unchanged, a second run sends one C(HEAD) request and changes nothing.
options:
  registry:
    description: The registry or site mirror to fetch from, V(https://HOST[:PORT]).
    type: str
    required: true
  repository:
    description: The bundle's repository, V(bundles/SITE).
    type: str
    required: true
  tag:
    description: The tag the controller moves to each new bundle.
    type: str
    default: latest
  dest:
    description:
      - Where the verified bundle is kept. C(DEST.blobs) holds downloads (also partial ones),
        C(DEST.digest) the digest of the bundle at O(dest), C(DEST.refused) the digest and reason
        of the last bundle refused.
    type: path
    required: true
  allowed_signers:
    description: The host's trusted bundle signers (an C(ssh-keygen) allowed-signers file).
    type: path
    required: true
  max_bytes:
    description: The most a bundle's files may add up to; a larger one is refused before any download.
    type: int
    default: 34359738368
seealso:
  - module: edgeml.fleet.bundle_push
  - module: edgeml.fleet.bundle_verify
"""

EXAMPLES = r"""
- name: Fetch site-a's newest bundle through the site mirror
  edgeml.fleet.bundle_pull:
    registry: https://gw-a.example.com:5000
    ca_path: /etc/edgeml/registry-ca.pem
    repository: bundles/site-a
    dest: /var/lib/edgeml/pull/bundle
    allowed_signers: /etc/edgeml/bundle-signers
"""

RETURN = r"""
digest:
  description: The digest of the bundle now at O(dest).
  returned: success
  type: str
previous:
  description: The digest of the bundle at O(dest) before the run (null when there was none).
  returned: success
  type: str
files:
  description: How many files the new bundle holds (0 when nothing changed).
  returned: success
  type: int
bytes_fetched:
  description: Bytes downloaded in this run.
  returned: success
  type: int
signer:
  description: The principal whose key signed the new bundle.
  returned: when a new bundle was fetched
  type: str
bundle_path:
  description: O(dest).
  returned: success
  type: str
"""

import os
import shutil

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle
from ansible_collections.edgeml.fleet.plugins.module_utils._artifact import (
    BUNDLE_TYPE, fetch_manifest, prune, pull, swap_in)
from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._files import write_file_atomic
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import REPO_RE, TAG_RE


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(4096)
    except OSError:
        return ""


def fetch(module, client, dest, wanted):
    """Fetch and verify the bundle at digest wanted into DEST.new -> (path, files, bytes, signer)."""
    params = module.params
    digest, files = fetch_manifest(client, params["repository"], wanted, BUNDLE_TYPE,
                                   params["max_bytes"])
    staging = dest + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    fetched = pull(client, params["repository"], files, staging, dest + ".blobs", params["retries"])
    try:
        signer = _bundle.verify_signature(module.run_command, staging, params["allowed_signers"])
        _bundle.check_sums(staging)
    except EdgemlError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prune(dest + ".blobs", files)
    return staging, len(files), fetched, signer, digest


def main():
    module = RegistryModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "repository": {"type": "str", "required": True},
            "tag": {"type": "str", "default": "latest"},
            "dest": {"type": "path", "required": True},
            "allowed_signers": {"type": "path", "required": True},
            "max_bytes": {"type": "int", "default": 32 << 30},
        },
        endpoints=False,
        supports_check_mode=True,
    )
    params = module.params
    repo, tag, dest = params["repository"], params["tag"], params["dest"].rstrip("/")
    if not REPO_RE.match(repo) or not TAG_RE.match(tag):
        module.fail_json(msg=f"repository {repo!r} or tag {tag!r} is not a valid OCI name")
    record, refused = dest + ".digest", dest + ".refused"
    previous = read_text(record).strip() if os.path.isdir(dest) else ""
    result = {"changed": False, "previous": previous or None, "digest": previous or None,
              "files": 0, "bytes_fetched": 0, "bundle_path": dest}
    client = module.clients()[0]
    try:
        wanted = client.head_manifest(repo, tag) or client.get_manifest(repo, tag)[2]
        if wanted == previous:
            module.exit_json(**result)
        known_bad = read_text(refused).split("\n", 1)
        if known_bad[0] == wanted:
            module.fail_json(msg=f"{repo}:{tag} is still the bundle {wanted} refused earlier: "
                                 f"{known_bad[1] if len(known_bad) > 1 else ''}".rstrip(), **result)
        result.update(changed=True, digest=wanted)
        if module.check_mode:
            module.exit_json(**result)
        os.makedirs(os.path.dirname(dest) or ".", 0o750, exist_ok=True)
        try:
            staging, files, fetched, signer, digest = fetch(module, client, dest, wanted)
        except _bundle.BundleError as exc:
            write_file_atomic(refused, f"{wanted}\n{exc.msg}".encode(), mode=0o640)
            result.update(changed=False, digest=previous or None)
            module.fail_json(msg=f"{repo}@{wanted}: refused, {dest} left as it was: {exc.msg}",
                             **result)
        swap_in(staging, dest)
        write_file_atomic(record, digest.encode(), mode=0o640)
    except EdgemlError as exc:
        result.update(changed=False, digest=previous or None)
        module.fail_from(exc, **result)
    result.update(files=files, bytes_fetched=fetched, signer=signer, digest=digest)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
