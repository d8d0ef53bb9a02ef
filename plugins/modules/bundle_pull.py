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
  - Before any download, the free space next to O(dest) must hold the new files twice (the
    download cache and the assembled bundle) with 64 MiB to spare.
  - The new bundle is assembled next to O(dest) and verified as M(edgeml.fleet.bundle_verify)
    does - the signature over C(SHA256SUMS) against O(allowed_signers) (the host's own trusted
    signers, never a file from the bundle), every file listed and matching, nothing unlisted.
    Its C(manifest.json) (covered by the signature) must list O(host), and must have been built
    (C(created)) after the bundle in place - an old signed bundle is never put back.
  - Only then does it replace O(dest). A bundle that fails these checks is removed with its
    downloads, O(dest) stays as it was, and its digest is remembered (the last 20) so that it
    is not fetched again; the task fails each time with the reason until the tag moves on. A
    failure of the link keeps the partial downloads for the next run to resume; no other
    failure is remembered.
  - The directory that holds O(dest) must be owned by the user the module runs as, and not
    writable by group or others (created 0750 when missing).
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
        C(DEST.digest) the digest, build time and blobs of the bundle at O(dest), C(DEST.refused)
        the digests and reasons of the last bundles refused.
    type: path
    required: true
  allowed_signers:
    description: The host's trusted bundle signers (an C(ssh-keygen) allowed-signers file).
    type: path
    required: true
  host:
    description: This host's name as the bundle lists it (its inventory name).
    type: str
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
    host: "{{ inventory_hostname }}"
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
created:
  description: When the new bundle was built (its C(manifest.json)).
  returned: when a new bundle was fetched
  type: str
bundle_path:
  description: O(dest).
  returned: success
  type: str
"""

import json
import os
import shutil

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle
from ansible_collections.edgeml.fleet.plugins.module_utils._artifact import (
    BUNDLE_TYPE, fetch_manifest, needed_bytes, prune, pull, swap_in)
from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._files import write_file_atomic
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import REPO_RE, TAG_RE, Unreachable

MAX_REFUSED = 20  # refused digests remembered
RESERVE = 64 << 20  # free space left over after a pull


class Refused(EdgemlError):
    """The bundle was fetched whole and its own checks failed: remembered, not fetched again."""


def read_json(path, default):
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.loads(handle.read(1 << 20))
        return value if isinstance(value, type(default)) else default
    except (OSError, ValueError):
        return default


def check_parent(parent):
    """The directory that holds the bundle and its siblings is this user's and no one else may
    write it: a link planted there could otherwise steer what root writes, reads or removes."""
    try:
        info = os.lstat(parent)
    except OSError as exc:
        raise EdgemlError(f"{parent}: {exc.strerror}")
    if not os.path.isdir(parent) or os.path.islink(parent) or info.st_uid != os.geteuid() \
            or info.st_mode & 0o022:
        raise EdgemlError(f"{parent}: the directory that holds the pulled bundle must be a directory "
                          "owned by this user that group and others cannot write (it is not); "
                          "refusing to use it")


def check_room(parent, needed):
    free = os.statvfs(parent)
    available = free.f_bavail * free.f_frsize
    if needed + RESERVE > available:
        raise EdgemlError(f"{parent}: the bundle needs {needed} bytes and {RESERVE} to spare, but "
                          f"only {available} are free; nothing was fetched. Free some space.")


def check_bundle(module, staging, host, current):
    """The checks that make a bundle a fit: signature, every file, this host, newer than ours."""
    params = module.params
    try:
        signer = _bundle.verify_signature(module.run_command, staging, params["allowed_signers"])
        _bundle.check_sums(staging)
        manifest = _bundle.read_manifest(staging)
    except _bundle.BundleError as exc:
        raise Refused(exc.msg)
    if host not in (manifest.get("hosts") or []) + (manifest.get("mirrors") or []):
        raise Refused(f"the bundle is for {', '.join(map(str, manifest.get('hosts') or [])) or 'no host'} "
                      f"(sites {', '.join(map(str, manifest.get('sites') or []))}), not {host}")
    created = manifest.get("created")
    if not isinstance(created, str) or not created:
        raise Refused("the bundle's manifest.json says not when it was built (created)")
    # ISO 8601 UTC (YYYY-MM-DDTHH:MM:SSZ) sorts as it reads: an older bundle never replaces ours.
    if current.get("created") and created <= current["created"]:
        raise Refused(f"the bundle was built {created}, not after the one in place "
                      f"({current['created']}): an old bundle is never put back")
    return signer, created


def fetch(module, client, dest, wanted, current, fetched):
    """Fetch and check the bundle at digest wanted into DEST.new -> (path, files, signer, created)."""
    params = module.params
    digest, files = fetch_manifest(client, params["repository"], wanted, BUNDLE_TYPE,
                                   params["max_bytes"])
    blobs, staging = dest + ".blobs", dest + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    # Only the bundle in place and this one may keep blobs (and partial downloads) in the cache.
    prune(blobs, set(current.get("blobs") or ()) | {d for _n, d, _s in files})
    check_room(os.path.dirname(dest), needed_bytes(files, blobs))
    pull(client, params["repository"], files, staging, blobs, params["retries"], fetched)
    try:
        signer, created = check_bundle(module, staging, params["host"], current)
    except Refused:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, files, signer, created, digest


def main():
    module = RegistryModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "repository": {"type": "str", "required": True},
            "tag": {"type": "str", "default": "latest"},
            "dest": {"type": "path", "required": True},
            "host": {"type": "str", "required": True},
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
    if not os.path.isfile(params["allowed_signers"]):
        module.fail_json(msg=f"allowed_signers {params['allowed_signers']}: no such file, so no "
                             "bundle can be trusted; install the fleet's signers first")
    parent = os.path.dirname(dest) or "."
    record, refused_path = dest + ".digest", dest + ".refused"
    current = read_json(record, {}) if os.path.isdir(dest) else {}
    previous = current.get("digest") if isinstance(current.get("digest"), str) else None
    fetched = [0]
    result = {"changed": False, "previous": previous, "digest": previous, "files": 0,
              "bytes_fetched": 0, "bundle_path": dest}
    client = module.clients()[0]
    try:
        if not module.check_mode:
            os.makedirs(parent, 0o750, exist_ok=True)
            check_parent(parent)
        wanted = client.head_manifest(repo, tag) or client.get_manifest(repo, tag)[2]
        if wanted == previous:
            module.exit_json(**result)
        refused = read_json(refused_path, {})
        if wanted in refused:
            module.fail_json(msg=f"{repo}:{tag} is still the bundle {wanted} refused earlier: "
                                 f"{str(refused[wanted])[:500]}", **result)
        if module.check_mode:
            result.update(changed=True, digest=wanted)
            module.exit_json(**result)
        try:
            staging, files, signer, created, digest = fetch(module, client, dest, wanted, current,
                                                            fetched)
        except Refused as exc:
            refused = dict(list(refused.items())[-(MAX_REFUSED - 1):], **{wanted: exc.msg})
            write_file_atomic(refused_path, json.dumps(refused).encode(), mode=0o640)
            prune(dest + ".blobs", current.get("blobs") or ())
            raise EdgemlError(f"{repo}@{wanted}: refused, {dest} left as it was: {exc.msg}")
        except Unreachable:
            raise  # the partial downloads stay: the next run resumes them
        except EdgemlError:
            prune(dest + ".blobs", current.get("blobs") or ())
            raise
        swap_in(staging, dest)
        blobs = sorted({d for _n, d, _s in files})
        write_file_atomic(record, json.dumps({"digest": digest, "created": created,
                                              "blobs": blobs}).encode(), mode=0o640)
        prune(dest + ".blobs", blobs)
    except EdgemlError as exc:
        result["bytes_fetched"] = fetched[0]
        module.fail_from(exc, **result)
    result.update(changed=True, digest=digest, files=len(files), bytes_fetched=fetched[0],
                  signer=signer, created=created)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
