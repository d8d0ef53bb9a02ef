# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: signatures attached to a model image as OCI referrers.

Decided here: how a signature (a Sigstore bundle) is attached to the image it signs (an OCI
artifact manifest whose ``subject`` is the image's manifest), how attached signatures are found
again (the referrers API where the registry has it, else the referrers tag schema: the tag
``sha256-<hex>`` holding an image index of the referrer manifests, which also works in an OCI
image layout and through a pull-through mirror's cache), and the limits on what is read back.

Everything read here came from a registry, a mirror or a bundle and may be hostile: only
referrers whose subject is the image asked about and whose artifact type is a Sigstore bundle
are kept, at most MAX_REFERRERS of them, each bundle at most MAX_SIGNATURE_BYTES and hashing to
its descriptor's digest. Whether a signature is valid and trusted is decided on the host, by
model_signature; nothing here trusts a signature. Standard library only: runs on hosts.
"""

from __future__ import annotations

import hashlib
import json

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import (
    BadDigest, check_digest, digest_hex)
from ansible_collections.edgeml.fleet.plugins.module_utils._layout import read_capped
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    OCI_INDEX, OCI_MANIFEST, NotFound, OCIError)

SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
EMPTY = {"mediaType": EMPTY_TYPE, "size": 2,
         "digest": "sha256:" + hashlib.sha256(EMPTY_DATA).hexdigest()}
MAX_REFERRERS = 16  # signatures looked at per image: a registry can attach endless referrers
MAX_SIGNATURE_BYTES = 1 << 20  # a Sigstore bundle is a few KiB, even with a certificate chain


def fallback_tag(digest):
    """The referrers tag schema's tag for digest: sha256-<hex>."""
    return "sha256-" + digest_hex(digest)


def _canonical(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def signature_manifest(subject, bundle, annotations=None):
    """(manifest body, blobs) of the referrer that attaches bundle (bytes) to subject (the
    descriptor of the image's manifest or index: mediaType, digest, size)."""
    layer = {"mediaType": SIGSTORE_BUNDLE, "size": len(bundle),
             "digest": "sha256:" + hashlib.sha256(bundle).hexdigest()}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGSTORE_BUNDLE,
                "config": EMPTY, "layers": [layer],
                "subject": {k: subject[k] for k in ("mediaType", "digest", "size")}}
    if annotations:
        manifest["annotations"] = {str(k): str(v) for k, v in annotations.items()}
    return _canonical(manifest), [(EMPTY, EMPTY_DATA), (layer, bundle)]


def _index_of(client, repo, digest):
    """The referrer descriptors the registry lists for digest (API, then tag schema), or []."""
    for lister in (_from_api, _from_tag):
        found = lister(client, repo, digest)
        if found is not None:
            return found
    return []


def _from_api(client, repo, digest):
    """The referrers API (OCI distribution 1.1); None where the registry does not have it."""
    referrers_api = getattr(client, "get_referrers", None)
    if referrers_api is None:  # an OCI image layout: the tag schema only
        return None
    try:
        body = referrers_api(repo, digest)
    except NotFound:
        return None
    return _descriptors(body, f"{client.name}: referrers of {repo}@{digest}")


def _from_tag(client, repo, digest):
    try:
        body, _media_type, _found = client.get_manifest(repo, fallback_tag(digest))
    except NotFound:
        return None
    return _descriptors(body, f"{client.name}: {repo}:{fallback_tag(digest)}")


def _descriptors(body, where):
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise OCIError(f"{where} is not JSON")
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise OCIError(f"{where} is not an image index")
    return [entry for entry in entries if isinstance(entry, dict)]


def _signature_descriptors(entries, where):
    """The entries that say they are Sigstore bundle referrers, digests checked, capped."""
    kept = []
    for entry in entries:
        if entry.get("artifactType") != SIGSTORE_BUNDLE:
            continue
        try:
            check_digest(entry.get("digest"), where)
        except BadDigest as exc:
            raise OCIError(exc.msg)
        if entry not in kept:
            kept.append(entry)
        if len(kept) == MAX_REFERRERS:
            break
    return kept


def fetch_signatures(client, repo, digest):
    """[bundle bytes] attached to repo@digest on client (a registry or an OCI layout).

    Only referrer manifests whose subject is digest and whose one layer is a Sigstore bundle of
    at most MAX_SIGNATURE_BYTES count; each manifest and bundle must hash to its digest.
    """
    check_digest(digest, f"{client.name}: signatures of {repo}")
    where = f"{client.name}: signatures of {repo}@{digest}"
    bundles = []
    for entry in _signature_descriptors(_index_of(client, repo, digest), where):
        body, _media_type, _found = client.get_manifest(repo, entry["digest"])  # hash checked
        try:
            manifest = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if not isinstance(manifest, dict) or not isinstance(manifest.get("subject"), dict) \
                or manifest["subject"].get("digest") != digest:
            continue  # listed under this image, but about another one
        layers = manifest.get("layers")
        if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
            continue
        layer = layers[0]
        size = layer.get("size")
        if layer.get("mediaType") != SIGSTORE_BUNDLE or not isinstance(size, int) \
                or not 0 < size <= MAX_SIGNATURE_BYTES:
            continue
        bundle = read_small_blob(client, repo, layer.get("digest"), size, where)
        if bundle not in bundles:
            bundles.append(bundle)
    return bundles


def read_small_blob(client, repo, digest, size, where):
    """A whole blob of at most MAX_SIGNATURE_BYTES that must be size bytes hashing to digest."""
    try:
        check_digest(digest, where)
    except BadDigest as exc:
        raise OCIError(exc.msg)
    resp, _status = client.open_blob(repo, digest)
    try:
        data = read_capped(resp, MAX_SIGNATURE_BYTES)
    finally:
        resp.close()
    if len(data) != size or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise OCIError(f"{where}: blob {digest} is not the {size} bytes its descriptor says; "
                       "the copy is corrupt or was altered")
    return data


def push_signature(client, repo, subject, bundle, annotations=None):
    """Attach bundle to subject on a registry; returns (referrer digest, bytes pushed).

    The referrer manifest is pushed by digest, then the referrers tag schema's index is read,
    the referrer added and written back, so registries without the referrers API (CNCF
    distribution 2.8, the site mirrors) serve it too. Pushing the same bundle again changes
    nothing.
    """
    body, blobs = signature_manifest(subject, bundle, annotations)
    referrer = "sha256:" + hashlib.sha256(body).hexdigest()
    entry = {"mediaType": OCI_MANIFEST, "digest": referrer, "size": len(body),
             "artifactType": SIGSTORE_BUNDLE}
    if annotations:
        entry["annotations"] = {str(k): str(v) for k, v in annotations.items()}
    tag = fallback_tag(subject["digest"])
    entries = _listed(client, repo, subject["digest"])
    if any(e.get("digest") == referrer for e in entries):
        return referrer, 0
    pushed = 0
    for descriptor, data in blobs:
        pushed += client.push_blob(repo, descriptor["digest"], data, descriptor["size"])
    client.put_manifest(repo, referrer, body, OCI_MANIFEST)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries + [entry]}
    client.put_manifest(repo, tag, _canonical(index), OCI_INDEX)
    return referrer, pushed


def _listed(client, repo, digest):
    """The entries of the referrers tag schema's index for digest on client ([] when none)."""
    tag = fallback_tag(digest)
    try:
        index_body, _media_type, _found = client.get_manifest(repo, tag)
    except NotFound:
        return []
    return _descriptors(index_body, f"{client.name}: {repo}:{tag}")


def copy_signatures(source, target, repo, subject, apply=True):
    """Attach to subject on target (a registry, or a layout being written) every signature
    source has for it. Returns (signatures source has, signatures target lacked: added, or
    with apply=False, that would be). Raises OCIError or BadDigest when either side's
    signatures cannot be read."""
    bundles = fetch_signatures(source, repo, subject["digest"])
    listed = {entry.get("digest") for entry in _listed(target, repo, subject["digest"])}
    added = 0
    for bundle in bundles:
        body, _blobs = signature_manifest(subject, bundle)
        if "sha256:" + hashlib.sha256(body).hexdigest() in listed:
            continue
        added += 1
        if apply:
            push_signature(target, repo, subject, bundle)
    return len(bundles), added
