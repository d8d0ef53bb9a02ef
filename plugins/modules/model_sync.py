#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_sync
short_description: Sync a model image from OCI registries into the host's model store
version_added: 0.1.0
description:
  - Pulls a model published as an OCI artifact (each layer one file, named by its
    C(org.opencontainers.image.title) annotation) or as a modelcar container image (files under
    O(model_path)) into the content-addressed store on the host, and optionally makes it the
    active version.
  - Every byte is checked against its sha256 digest while it streams; an interrupted download
    resumes from its partial file with HTTP C(Range), also in a later run.
  - A version becomes C(current) only when it is complete and verified, by an atomic symlink
    switch; the version it replaces becomes C(previous), the rollback target.
  - Endpoints are tried in order (the site mirror first, then core); the one that served is
    returned in RV(source).
  - O(registries) defaults to the host variable C(edgeml_registry_endpoints) that the
    P(edgeml.fleet.sites#inventory) inventory sets, O(username) and O(password) to
    C(edgeml_registry_username) and C(edgeml_registry_password).
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
  - edgeml.fleet.registry.endpoints
  - edgeml.fleet.registry.attributes
options:
  name:
    description: Model name in the store (a directory under O(store_dir)).
    type: str
    required: true
  ref:
    description:
      - The model image, C(REPOSITORY:TAG) or C(REPOSITORY@sha256:DIGEST), without the registry
        host (the registry comes from O(registries)).
      - Required for O(state=present) and O(state=active).
    type: str
  digest:
    description:
      - Pin the manifest digest (C(sha256:...)). Resolve tags once on the controller (lookup
        P(edgeml.fleet.model_digest#lookup)) and pass the digest, so a rollout never mixes
        versions even if the tag moves.
      - With O(state=rollback), the staged version to switch to.
    type: str
  store_dir:
    description: The host model store.
    type: path
    default: /var/lib/edgeml/models
  state:
    description:
      - V(present) stages the version (downloads and verifies it) without switching.
      - V(active) stages it and makes it current.
      - V(absent) removes the model and its versions.
      - V(rollback) switches to the previous version (or to O(digest)); afterwards there is no
        previous version, so a second rollback changes nothing.
    type: str
    choices: [present, active, absent, rollback]
    default: active
  keep:
    description: Versions to keep per model (current and previous are always kept).
    type: int
    default: 3
  model_path:
    description: For modelcar images, the directory in the image that holds the model.
    type: str
    default: /models
  max_extract_bytes:
    description: For modelcar images, refuse layers that unpack to more than this (a decompression bomb).
    type: int
    default: 8589934592
  owner:
    description:
      - Owner given to the store's directories and the model's files. The roles set V(root),
        because the inference service only reads the store.
      - A difference in owner, group or mode (directories C(0750), files C(0640)) is put right
        and reported as a change, also in check mode.
    type: str
  group:
    description: Group given to them (the inference service's group, which may only read).
    type: str
  lock_timeout:
    description:
      - Seconds to wait for another run that holds the store's lock (sync, rollback and
        clean-up take it; check mode does not), then fail without changing anything.
    type: int
    default: 600
notes:
  - Runs on the edge host with only the Python standard library.
seealso:
  - module: edgeml.fleet.model_info
  - module: edgeml.fleet.model_publish
"""

EXAMPLES = r"""
- name: Make fraud-detector 1.1 the active model, from the site mirror or core
  edgeml.fleet.model_sync:
    name: fraud-detector
    ref: models/fraud-detector:1.1
    registries: "{{ edgeml_registry_endpoints }}"
    username: "{{ edgeml_registry_username }}"
    password: "{{ edgeml_registry_password }}"
    owner: root  # the service only reads the store: never make it the service user's
    group: edgeml

- name: Stage a pinned digest without switching (a canary decides later)
  edgeml.fleet.model_sync:
    name: fraud-detector
    ref: models/fraud-detector:1.1
    digest: "{{ lookup('edgeml.fleet.model_digest', 'models/fraud-detector:1.1', registry=core) }}"
    registries: "{{ edgeml_registry_endpoints }}"
    state: present

- name: Sync from an offline bundle's OCI layout
  edgeml.fleet.model_sync:
    name: image-classifier
    ref: models/image-classifier:1.0
    registries: ["oci-layout:/media/usb/edgeml-bundle/images"]

- name: Roll back to the previous version
  edgeml.fleet.model_sync:
    name: fraud-detector
    state: rollback
"""

RETURN = r"""
digest:
  description: Manifest digest of the version now active (or staged, with O(state=present)).
  returned: success, except with O(state=absent)
  type: str
  sample: sha256:5d1c3f0f0a3e2b8e4a7f3c0d6b1e9a8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a
previous_digest:
  description: The version that was active before this run.
  returned: success
  type: str
  sample: sha256:0b1f2e3d4c5b6a79887766554433221100ffeeddccbbaa998877665544332211
version_dir:
  description: Directory holding the version's files.
  returned: success, except with O(state=absent)
  type: str
  sample: /var/lib/edgeml/models/fraud-detector/versions/5d1c3f0f…
source:
  description: The endpoint that served the manifest (V(store) when no download was needed).
  returned: success
  type: str
  sample: https://site-b-mirror:5000
shape:
  description: V(artifact) or V(modelcar).
  returned: when a version was staged or found
  type: str
  sample: artifact
bytes_downloaded:
  description: Blob bytes fetched over the network in this run (would be, in check mode).
  returned: success
  type: int
  sample: 33679
bytes_reused:
  description: Blob bytes already in the store (or in partial files) that were not fetched again.
  returned: success
  type: int
  sample: 0
seconds:
  description: Wall time of the run.
  returned: success
  type: float
  sample: 0.42
files:
  description: The version's files with their digests and sizes.
  returned: success, except with O(state=absent)
  type: dict
  sample: {"model.onnx": {"digest": "sha256:88e8…", "size": 605}}
"""

import contextlib
import grp
import os
import pwd
import shutil
import time

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._digest import check_digest
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    INDEX_TYPES, TITLE, OCIError, choose_platform, parse_manifest, parse_ref)
from ansible_collections.edgeml.fleet.plugins.module_utils._transfer import download_blob
from ansible_collections.edgeml.fleet.plugins.module_utils._store import (
    Store, StoreError, check_model_name)


def resolve(clients, repo, reference, pinned):
    """Fetch the manifest from the first endpoint that serves it.

    Returns (client, top-level digest, image manifest dict). Errors of every endpoint are kept,
    so the final message says what each one answered.
    """
    errors = []
    for client in clients:
        try:
            body, media_type, digest = client.get_manifest(repo, pinned or reference)
            where = f"{client.name} {repo}@{digest}"
            if pinned and digest != pinned:
                raise OCIError(f"{client.name}: manifest {repo}@{pinned} hashes to {digest}; "
                               "the registry's copy is corrupt")
            doc, media_type = parse_manifest(body, media_type, where)
            if media_type in INDEX_TYPES:
                entry = choose_platform(doc, where)
                body, child_type, child = client.get_manifest(repo, entry["digest"])
                if child != entry["digest"]:
                    raise OCIError(f"{client.name}: manifest {entry['digest']} hashes to {child}")
                doc, media_type = parse_manifest(body, child_type, where)
                if media_type in INDEX_TYPES:
                    raise OCIError(f"{where}: nested image indexes are not supported")
            return client, digest, doc
        except OCIError as exc:
            errors.append(exc.msg)
            if not exc.retry_elsewhere and len(clients) == 1:
                break
    wanted = f"{repo}@{pinned}" if pinned else f"{repo}:{reference}"
    raise OCIError(f"no registry endpoint could serve {wanted}: " + "; ".join(errors))


def fetch_layers(store, clients, first, repo, layers, retries):
    """Download the blobs the store lacks, from the serving endpoint first, then the others."""
    order = [first] + [c for c in clients if c is not first]
    fetched = 0
    for layer in layers:
        if store.has_blob(layer["digest"]):
            continue
        errors = []
        for client in order:
            try:
                fetched += download_blob(client, repo, layer["digest"],
                                         store.blob_path(layer["digest"]), layer.get("size"),
                                         retries)
                break
            except OCIError as exc:
                errors.append(exc.msg)
                if not exc.retry_elsewhere:
                    raise OCIError("; ".join(errors))
        else:
            raise OCIError("; ".join(errors))
    return fetched


def owner_ids(owner, group):
    """(uid, gid) for owner and group; -1 leaves that one as it is."""
    return (pwd.getpwnam(owner).pw_uid if owner else -1,
            grp.getgrnam(group).gr_gid if group else -1)


def sync(module, store, result):
    params = module.params
    name = params["name"]
    repo, tag, ref_digest = parse_ref(params["ref"])
    pinned = params["digest"] or ref_digest
    if params["digest"] and ref_digest and params["digest"] != ref_digest:
        module.fail_json(msg=f"ref pins {ref_digest} but digest is {params['digest']}")
    current = store.current(name)
    result["previous_digest"] = current

    if pinned and store.version_intact(name, pinned):
        digest, source, shape = pinned, "store", store.read_record(store.version_dir(name, pinned))["shape"]
    else:
        clients = module.clients()
        if not clients:
            module.fail_json(msg=f"model '{name}': {repo}:{tag or pinned} is not in the store and "
                                 "no registry endpoint was given (registries); a disconnected host "
                                 "needs the offline bundle (oci-layout:) endpoint", **result)
        client, digest, manifest = resolve(clients, repo, tag, pinned)
        source = client.name
        layers = manifest.get("layers") or []
        if not layers:
            raise OCIError(f"{source} {repo}@{digest}: the manifest has no layers")
        shape = "artifact" if all((layer.get("annotations") or {}).get(TITLE) for layer in layers) \
            else "modelcar"
        if not store.version_intact(name, digest):
            # A reused blob is checked (size, and content when it changed since verification);
            # a damaged one is removed here so that it is fetched again.
            missing = [layer for layer in layers
                       if not store.blob_ok(layer["digest"], layer.get("size"),
                                            repair=not module.check_mode)]
            reused = sum(layer.get("size", 0) for layer in layers if layer not in missing)
            partial = sum(store.partial_size(layer["digest"]) for layer in missing)
            need = sum(layer.get("size", 0) for layer in missing) - partial
            result.update(bytes_reused=reused + partial, bytes_downloaded=need)
            if module.check_mode:
                result.update(changed=True, digest=digest, source=source, shape=shape)
                return
            store.ensure_dirs()
            store.clean_staging(name)
            # What failed runs left (blobs no version uses, partial files) goes, but for this
            # image's: a hostile source cannot pile up orphans run after run.
            store.collect_garbage(keep=[layer["digest"] for layer in layers])
            unpack = sum(layer.get("size", 0) for layer in layers) * 4 if shape == "modelcar" else 0
            free = shutil.disk_usage(store.root).free
            wanted = need + unpack + max(1 << 20, (need + unpack) // 20)  # 5 % margin
            if wanted > free:
                raise StoreError(f"not enough disk at {store.root} for model '{name}': "
                                 f"{wanted} bytes needed, {free} free. "
                                 "The active version is untouched.")
            result["bytes_downloaded"] = fetch_layers(store, clients, client, repo, layers,
                                                      params["retries"])
            store.mark_verified([layer["digest"] for layer in missing])
            record = {"name": name, "ref": params["ref"], "digest": digest, "shape": shape,
                      "source": source, "blobs": [layer["digest"] for layer in layers]}
            if shape == "artifact":
                def fill(tmp):
                    return store.link_artifact_files(layers, tmp)
            else:
                def fill(tmp):
                    return store.extract_modelcar(layers, tmp, params["model_path"],
                                                  params["max_extract_bytes"])
            store.stage(name, digest, record, fill)
            result["changed"] = True

    result.update(digest=digest, source=source, shape=shape)
    if params["state"] == "active" and current != digest:
        result["changed"] = True
        if not module.check_mode:
            store.activate(name, digest)


def settle_ownership(module, store, result, ids):
    """Ownership and modes drift too: putting them right is a change (reported in check mode)."""
    if ids != (-1, -1) and os.path.isdir(store.model_dir(module.params["name"])):
        if store.settle_ownership(module.params["name"], *ids, apply=not module.check_mode):
            result["changed"] = True


def apply_state(module, store, result, ids):
    """Do what state asks (under the store lock); returns the digest that was current before."""
    params = module.params
    name = params["name"]
    # The store's own directories become root's first (a store made by an older release was the
    # service user's), so the service cannot swap one for a link while this run works in it.
    settle_ownership(module, store, result, ids)
    before = store.current(name)
    if params["state"] == "absent":
        result["previous_digest"] = before
        if os.path.isdir(store.model_dir(name)):
            result["changed"] = True
            if not module.check_mode:
                store.remove(name)
                store.collect_garbage()
        return before
    if params["state"] == "rollback":
        result["previous_digest"] = before
        target = params["digest"] or store.previous(name)
        if target and target != before:
            if not store.has_version(name, target):
                raise StoreError(f"model '{name}' has no staged version {target} to roll back to")
            result["changed"] = True
            if not module.check_mode:
                store.rollback(name, target)
        result["digest"] = target or before
    else:
        sync(module, store, result)
    if not module.check_mode and result.get("digest") and store.prune(name, params["keep"]):
        store.collect_garbage()
    settle_ownership(module, store, result, ids)
    digest = result.get("digest")
    if digest and store.has_version(name, digest):
        vdir = store.version_dir(name, digest)
        record = store.read_record(vdir) or {}
        result.update(version_dir=vdir, files=record.get("files", {}))
        result.setdefault("shape", record.get("shape"))
    return before


def main():
    module = RegistryModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "ref": {"type": "str"},
            "digest": {"type": "str"},
            "store_dir": {"type": "path", "default": "/var/lib/edgeml/models"},
            "state": {"type": "str", "default": "active",
                      "choices": ["present", "active", "absent", "rollback"]},
            "keep": {"type": "int", "default": 3},
            "model_path": {"type": "str", "default": "/models"},
            "max_extract_bytes": {"type": "int", "default": 8 << 30},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "lock_timeout": {"type": "int", "default": 600},
        },
        required_if=[("state", "present", ["ref"]), ("state", "active", ["ref"])],
        supports_check_mode=True,
    )
    params = module.params
    started = time.monotonic()
    result = {"changed": False, "bytes_downloaded": 0, "bytes_reused": 0, "source": "store"}
    if params["keep"] < 1:
        module.fail_json(msg=f"keep must be 1 or more, got {params['keep']}")
    store = Store(params["store_dir"])
    name = params["name"]
    try:  # before anything changes
        ids = owner_ids(params["owner"], params["group"])
    except KeyError as exc:
        module.fail_json(msg=f"owner/group not found on the host: {exc}; provision it first "
                             "(role edgeml.fleet.edge_host)", **result)
    try:
        check_model_name(name)
        if params["digest"]:
            check_digest(params["digest"], "option digest")
        # One writer at a time: a second run waits for the lock; check mode only reads.
        with contextlib.nullcontext() if module.check_mode else store.lock(params["lock_timeout"]):
            before = apply_state(module, store, result, ids)
    except EdgemlError as exc:
        result["seconds"] = round(time.monotonic() - started, 3)
        module.fail_from(exc, **result)
    result["seconds"] = round(time.monotonic() - started, 3)
    after = result.get("digest") if params["state"] in ("active", "rollback") else store.current(name)
    if params["state"] == "absent":
        after = None
    if module._diff:
        result["diff"] = {"before": {"active_digest": before}, "after": {"active_digest": after}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
