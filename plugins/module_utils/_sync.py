# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what model_sync does to the host's store, state by state.

Decided here: which endpoint serves a model (the first that answers; every endpoint's error is
kept for the message), which blobs are fetched (only those the store lacks, from the serving
endpoint first), whether there is disk for them, when a version is staged, activated, rolled
back, removed or recorded as rejected, and what a run returns. The store's own rules (layout,
lock, integrity, ownership) are in _store.py.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import time

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import check_digest
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import fetch_signatures
from ansible_collections.edgeml.fleet.plugins.module_utils._registry import make_client
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    INDEX_TYPES, TITLE, OCIError, choose_platform, parse_manifest, parse_ref)
from ansible_collections.edgeml.fleet.plugins.module_utils._throttle import limiter
from ansible_collections.edgeml.fleet.plugins.module_utils._transfer import download_blob
from ansible_collections.edgeml.fleet.plugins.module_utils._store import (
    MAX_SIGNATURE_BYTES, MAX_SIGNATURES, Store, StoreError, check_model_name, reason_text)


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


def fetch_layers(store, clients, first, repo, layers, retries, limiter=None):
    """Download the blobs the store lacks, from the serving endpoint first, then the others.

    limiter (a RateLimiter) paces every chunk read, so the blobs together keep its cap."""
    order = [first] + [c for c in clients if c is not first]
    progress = limiter.take if limiter else None
    fetched = 0
    for layer in layers:
        if store.has_blob(layer["digest"]):
            continue
        errors = []
        for client in order:
            try:
                fetched += download_blob(client, repo, layer["digest"],
                                         store.blob_path(layer["digest"]), layer.get("size"),
                                         retries, progress)
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


def note_rejection(module, store, result, digest):
    """Report whether digest was rejected on this host; retry_rejected forgets that first."""
    result["rejected"] = store.rejection(module.params["name"], digest)
    if result["rejected"] is not None and module.params["retry_rejected"]:
        result.update(rejected=None, changed=True)
        if not module.check_mode:
            store.forget_rejection(module.params["name"], digest)


def record_rejection(module, store, result, ids):
    """state=rejected: remember why this digest failed here, so a deploy does not try it again."""
    params = module.params
    result.update(digest=params["digest"], previous_digest=store.current(params["name"]))
    reason = reason_text(params["reason"])
    if store.rejection(params["name"], params["digest"]) != reason:
        result["changed"] = True
        if not module.check_mode:
            store.reject(params["name"], params["digest"], reason, *ids)
    result["rejected"] = reason


def signature_clients(module, errors):
    """The endpoints' clients, for signatures only (the version is in the store): an endpoint
    that cannot be used is an entry of errors, not a failure."""
    params = module.params
    clients = []
    for endpoint in params["registries"] or []:
        try:
            clients.append(make_client(endpoint, params["username"], params["password"],
                                       params["validate_certs"], params["ca_path"],
                                       params["timeout"]))
        except OCIError as exc:
            errors.append(exc.msg)
    return clients


def find_signatures(order, repo, digest, errors):
    """(bundles, endpoint name) of the first endpoint in order that has signatures for
    repo@digest, or ([], None). An endpoint with none (a mirror that lacks them) or that fails
    is passed over; its failure is an entry of errors."""
    for client in order:
        try:
            bundles = fetch_signatures(client, repo, digest)
        except EdgemlError as exc:
            errors.append(exc.msg if client.name in exc.msg else f"{client.name}: {exc.msg}")
            continue
        except OSError as exc:  # an OCI layout's file that cannot be read
            errors.append(f"{client.name}: cannot read the signatures of {repo}@{digest}: {exc}")
            continue
        if bundles:
            return bundles, client.name
    return [], None


def sync_signatures(module, store, result, ids, order):
    """Keep the version's signatures as the endpoints have them. An empty answer never erases
    what the store has; a failure is reported in signature_errors and never fails the run (the
    host's signature check decides whether the version may serve)."""
    name, digest = module.params["name"], result["digest"]
    errors = result.setdefault("signature_errors", [])
    repo = parse_ref(module.params["ref"])[0]
    bundles, source = find_signatures(order, repo, digest, errors) if order else ([], None)
    if bundles:
        if store.save_signatures(name, digest, bundles, *ids, apply=not module.check_mode):
            result["changed"] = True
        kept = {hashlib.sha256(data).hexdigest() for data in bundles[:MAX_SIGNATURES]
                if len(data) <= MAX_SIGNATURE_BYTES}
        result.update(signatures=len(kept), signatures_source=source)
    else:
        kept = len(store.signatures(name, digest))
        result.update(signatures=kept, signatures_source="store" if kept else None)


def sync(module, store, result):
    """Stage (and with state=active, activate) the version; returns the endpoints to ask for
    its signatures, the one that served first ([] when none is to be asked)."""
    params = module.params
    name = params["name"]
    repo, tag, ref_digest = parse_ref(params["ref"])
    pinned = params["digest"] or ref_digest
    if params["digest"] and ref_digest and params["digest"] != ref_digest:
        module.fail_json(msg=f"ref pins {ref_digest} but digest is {params['digest']}")
    current = store.current(name)
    result["previous_digest"] = current
    if pinned:  # known before any registry is asked, so a failure's result reports it too
        note_rejection(module, store, result, pinned)

    if pinned and store.version_intact(name, pinned):
        digest, source, shape = pinned, "store", store.read_record(store.version_dir(name, pinned))["shape"]
        # The network is asked only when the store keeps no signature for the version (or when
        # asked to refresh): a deploy of what a host has needs no link, and a dead endpoint's
        # timeout is not paid on every run.
        ask = params["signatures"] and (params["refresh_signatures"]
                                        or not store.signatures(name, pinned))
        order = signature_clients(module, result.setdefault("signature_errors", [])) if ask else []
    else:
        clients = module.clients()
        if not clients:
            module.fail_json(msg=f"model '{name}': {repo}:{tag or pinned} is not in the store and "
                                 "no registry endpoint was given (registries); a disconnected host "
                                 "needs the offline bundle (oci-layout:) endpoint", **result)
        client, digest, manifest = resolve(clients, repo, tag, pinned)
        source = client.name
        order = [client] + [c for c in clients if c is not client]
        note_rejection(module, store, result, digest)
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
                return order
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
            began, result["download_started"] = time.monotonic(), time.time()
            result["bytes_downloaded"] = fetch_layers(store, clients, client, repo, layers,
                                                      params["retries"],
                                                      limiter(params["max_bytes_per_second"]))
            took = time.monotonic() - began
            result["download_ended"] = time.time()
            result["bytes_per_second"] = int(result["bytes_downloaded"] / took) if took > 0 else 0
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
    return order


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
    elif params["state"] == "rejected":
        record_rejection(module, store, result, ids)
        return before
    else:
        order = sync(module, store, result)
        sync_signatures(module, store, result, ids, order if params["signatures"] else [])
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


def run(module):
    """model_sync's whole run: check the options, take the store's lock, apply state, exit."""
    params = module.params
    started = time.monotonic()
    result = {"changed": False, "bytes_downloaded": 0, "bytes_reused": 0, "source": "store"}
    if params["keep"] < 1:
        module.fail_json(msg=f"keep must be 1 or more, got {params['keep']}")
    params["max_bytes_per_second"] = params["max_bytes_per_second"] or 0
    if params["max_bytes_per_second"] < 0:
        module.fail_json(msg=f"max_bytes_per_second must be 0 (no cap) or more, got "
                             f"{params['max_bytes_per_second']}; set it in bytes per second")
    if params["state"] == "rejected" and not params["reason"].strip():
        module.fail_json(msg="reason must say why the version was rejected")
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
