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
    download cache and the assembled bundle, in whole blocks) with 64 MiB to spare, and there
    must be an inode for every file and directory.
  - The new bundle is assembled next to O(dest) and verified as M(edgeml.fleet.bundle_verify)
    does - the signature over C(SHA256SUMS) against O(allowed_signers) (the host's own trusted
    signers, never a file from the bundle), every file listed and matching, nothing unlisted.
  - Its C(manifest.json) (covered by the signature) must list O(host) in C(hosts), and its build
    time (C(created), V(YYYY-MM-DDTHH:MM:SSZ)) must be after that of the bundle in place, as
    that bundle's own manifest says (the same time only for the same content re-signed). An old
    signed bundle is never put back. A build time more than a day ahead of this host's clock is
    refused and not remembered.
  - Only then does it replace O(dest) (a crash between the swap's two renames is undone at the
    next run). A bundle that fails these checks is removed with its downloads, O(dest) stays as
    it was, and the refusal is remembered (the last 20) for these O(allowed_signers), so that it
    is not fetched again; the task fails each time with the reason until the tag moves on. Any
    other failure (the link, a corrupt blob, the disk) keeps the downloads that verified, for
    the next run.
  - One pull of O(dest) runs at a time (a lock file, C(DEST.lock)).
  - The directory that holds O(dest) must be owned by the user the module runs as, and not
    writable by group or others (created 0750 when missing).
  - Applying the bundle is the job of its C(bootstrap.sh) (C(sh DEST/bootstrap.sh --bundle
    DEST)), as for a technician's copy; see the collection's docs/pull.md.
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
        C(DEST.digest) the digest and blobs of the bundle at O(dest), C(DEST.refused) the last
        bundles refused and why, C(DEST.lock) the lock.
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

import datetime
import fcntl
import json
import os
import re
import shutil

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle
from ansible_collections.edgeml.fleet.plugins.module_utils._artifact import (
    BUNDLE_TYPE, check_ref, fetch_manifest, needed_space, prune, pull, recover, swap_in, tag_digest)
from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._digest import is_digest, sha256_file
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._files import read_json_dict, write_file_atomic

MAX_REFUSED = 20  # refused bundles remembered
RESERVE = 64 << 20  # free space left over after a pull
CREATED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")  # what build_bundle writes: UTC
AHEAD = datetime.timedelta(days=1)  # how far a bundle's build time may be ahead of this host's clock


class Refused(EdgemlError):
    """The bundle was fetched whole and its own content failed the checks: remembered (for these
    signers), not fetched again."""


def sha256_of(path):
    try:
        return sha256_file(path).hexdigest()
    except OSError:
        return ""


def in_place(dest):
    """What is known of the bundle at dest: its digest and blobs (the record, checked), and its
    build time and SHA256SUMS from the bundle itself, which was verified when it was put there:
    the rollback guard does not rest on the record."""
    record = read_json_dict(dest + ".digest") if os.path.isdir(dest) else {}
    blobs = record.get("blobs")
    manifest = read_json_dict(os.path.join(dest, _bundle.MANIFEST)) if os.path.isdir(dest) else {}
    created = manifest.get("created")
    return {"digest": record.get("digest") if is_digest(record.get("digest")) else None,
            "blobs": blobs if isinstance(blobs, list) and all(map(is_digest, blobs)) else [],
            "created": created if isinstance(created, str) and CREATED_RE.match(created) else "",
            "sums": sha256_of(os.path.join(dest, _bundle.SUMS)) if os.path.isdir(dest) else ""}


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


def lock(dest):
    """One pull at a time for dest (the timer and a manual run): the lock file's descriptor."""
    fd = os.open(dest + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise EdgemlError(f"{dest}: another pull of this bundle is running; try again when it is done")
    return fd


def check_room(parent, files, blobs):
    size, inodes = needed_space(files, blobs)
    free = os.statvfs(parent)
    available = free.f_bavail * free.f_frsize
    if size + RESERVE > available or inodes + 1000 > free.f_favail:
        raise EdgemlError(f"{parent}: the bundle needs {size} bytes (and {RESERVE} to spare) and "
                          f"{inodes} inodes, but {available} bytes and {free.f_favail} inodes are "
                          "free; nothing was fetched. Free some space.")


def check_bundle(module, staging, host, current):
    """The checks that make a bundle a fit: signature, every file, this host, newer than ours."""
    params = module.params
    try:
        signer = _bundle.verify_signature(module.run_command, staging, params["allowed_signers"])
        _bundle.check_sums(staging)
        manifest = _bundle.read_manifest(staging)
    except _bundle.BundleError as exc:
        raise Refused(exc.msg)
    if host not in (manifest.get("hosts") or []):
        raise Refused(f"the bundle is for {', '.join(map(str, manifest.get('hosts') or [])) or 'no host'} "
                      f"(sites {', '.join(map(str, manifest.get('sites') or []))}), not {host}")
    created = manifest.get("created")
    if not isinstance(created, str) or not CREATED_RE.match(created):
        raise Refused(f"the bundle's build time (created) {str(created)[:40]!r} is not "
                      "YYYY-MM-DDTHH:MM:SSZ")
    ahead = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc) - datetime.datetime.now(datetime.timezone.utc)
    if ahead > AHEAD:
        # Not remembered: this host's clock may be the one that is wrong.
        raise EdgemlError(f"the bundle says it was built {created}, more than a day ahead of this "
                          "host's clock; refusing it (check both clocks)")
    # The same UTC format sorts as it reads: an older bundle never replaces ours; one built at
    # the same time only when it is ours re-signed (SHA256SUMS unchanged, a new signing key).
    if current["created"] and (created < current["created"] or (
            created == current["created"] and sha256_of(os.path.join(staging, _bundle.SUMS)) != current["sums"])):
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
    prune(blobs, set(current["blobs"]) | {d for _n, d, _s in files})
    check_room(os.path.dirname(dest), files, blobs)
    pull(client, params["repository"], files, staging, blobs, params["retries"], fetched)
    try:
        signer, created = check_bundle(module, staging, params["host"], current)
    except EdgemlError:
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
    try:
        check_ref(repo, tag)
    except EdgemlError as exc:
        module.fail_json(msg=exc.msg)
    if not os.path.isfile(params["allowed_signers"]):
        module.fail_json(msg=f"allowed_signers {params['allowed_signers']}: no such file, so no "
                             "bundle can be trusted; install the fleet's signers first")
    parent = os.path.dirname(dest) or "."
    fetched = [0]
    result = {"changed": False, "previous": None, "digest": None, "files": 0,
              "bytes_fetched": 0, "bundle_path": dest}
    client = module.clients()[0]
    try:
        if not module.check_mode:
            os.makedirs(parent, 0o750, exist_ok=True)
            check_parent(parent)
            lock(dest)  # held until the module exits
            recover(dest)
        current = in_place(dest)
        result.update(previous=current["digest"], digest=current["digest"])
        wanted = tag_digest(client, repo, tag)
        if wanted == current["digest"]:
            module.exit_json(**result)
        # A refusal holds for the trusted signers it was made with: new signers, a new look.
        refused = read_json_dict(dest + ".refused")
        key = f"{wanted} {sha256_of(params['allowed_signers'])[:16]}"
        if key in refused:
            module.fail_json(msg=f"{repo}:{tag} is still the bundle {wanted} refused earlier: "
                                 f"{str(refused[key])[:500]}", **result)
        if module.check_mode:
            result.update(changed=True, digest=wanted)
            module.exit_json(**result)
        try:
            staging, files, signer, created, digest = fetch(module, client, dest, wanted, current,
                                                            fetched)
        except Refused as exc:
            refused = dict(list(refused.items())[-(MAX_REFUSED - 1):], **{key: exc.msg})
            write_file_atomic(dest + ".refused", json.dumps(refused).encode(), mode=0o640)
            prune(dest + ".blobs", current["blobs"])
            raise EdgemlError(f"{repo}@{wanted}: refused, {dest} left as it was: {exc.msg}")
        # Any other failure (the link, a corrupt blob, the disk) keeps this bundle's downloads:
        # the next run resumes them, and the next bundle's prune drops them.
        swap_in(staging, dest)
        blobs = sorted({d for _n, d, _s in files})
        write_file_atomic(dest + ".digest", json.dumps({"digest": digest, "created": created,
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
