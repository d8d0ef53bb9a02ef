# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: model_sign, signing an image that another tool published.

Decided here: which files an image holds under the names a host's store gives them (an
artifact's layer titles, read from the manifest; a modelcar's files under model_path, found by
downloading and unpacking the image with the store's own code into a temporary store), that
every platform of an image index must hold the same layers (one signature covers the index),
and that a signature made elsewhere is attached only if its statement lists exactly those files
and digests. Whether a signature is valid and trusted is decided on the hosts.
"""

from __future__ import annotations

import os
import tempfile

from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._layout import read_capped
from ansible_collections.edgeml.fleet.plugins.module_utils._model_signing import (
    SigningError, attach, describe_signer, differences, same_signature, signer_from, signers,
    statement)
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    INDEX_TYPES, TITLE, OCIError, parse_manifest, parse_ref)
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import (
    MAX_REFERRERS, MAX_SIGNATURE_BYTES, fetch_signatures)
from ansible_collections.edgeml.fleet.plugins.module_utils._store import (
    Store, StoreError, _check_title, check_model_name)
from ansible_collections.edgeml.fleet.plugins.module_utils._sync import fetch_layers


def image_layers(client, repo, doc, media_type, where):
    """The layers of an image; of an index, those every platform shares (else refused)."""
    if media_type not in INDEX_TYPES:
        return doc.get("layers") or []
    entries = doc.get("manifests") or []
    if not 0 < len(entries) <= MAX_REFERRERS:
        raise OCIError(f"{where}: an image index of {len(entries)} manifests; model_sign signs "
                       f"indexes of 1 to {MAX_REFERRERS}")
    found = []
    for entry in entries:
        body, child_type, child = client.get_manifest(repo, entry["digest"])
        if child != entry["digest"]:
            raise OCIError(f"{where}: manifest {entry['digest']} hashes to {child}")
        child_doc, child_type = parse_manifest(body, child_type, f"{where} {entry['digest']}")
        if child_type in INDEX_TYPES:
            raise OCIError(f"{where}: nested image indexes are not supported")
        found.append(child_doc.get("layers") or [])
    if any(layers != found[0] for layers in found):
        raise OCIError(f"{where}: the platforms of this image index hold different layers, so no "
                       "one signature can cover it; sign each platform's image by its digest")
    return found[0]


class Image:
    """The files of one image, as a host's store names them, fetched only when needed."""

    def __init__(self, module, client, repo, layers, tmp, name):
        self.module, self.client, self.repo, self.layers = module, client, repo, layers
        self.tmp, self.name = tmp, name
        self.shape = "artifact" if all((layer.get("annotations") or {}).get(TITLE)
                                       for layer in layers) else "modelcar"
        self._fetched = None

    def files(self):
        """{file: digest}: from the manifest for an artifact, by unpacking a modelcar."""
        if self.shape == "modelcar":
            return self.fetch()[1]
        files = {}
        for layer in self.layers:
            title = _check_title(layer)
            if title in files:
                raise StoreError(f"layer {layer['digest']} is titled {title!r} like another: "
                                 "two files of one name; a host refuses this image")
            files[title] = layer["digest"]
        return files

    def fetch(self):
        """(directory named after the model, {file: digest}): the image downloaded into a
        temporary store and its files laid out with the store's own code."""
        if self._fetched is None:
            store = Store(os.path.join(self.tmp, "store"))
            store.ensure_dirs()
            fetch_layers(store, [self.client], self.client, self.repo, self.layers,
                         self.module.params["retries"])
            model_dir = os.path.join(self.tmp, "model", self.name)
            os.makedirs(model_dir, 0o700)
            if self.shape == "artifact":
                found = store.link_artifact_files(self.layers, model_dir)
            else:
                found = store.extract_modelcar(self.layers, model_dir,
                                               self.module.params["model_path"])
            links = sorted(rel for rel, info in found.items() if "link" in info)
            if links:
                raise SigningError(f"the image holds symlinks under the model's path "
                                   f"({', '.join(map(repr, links[:5]))}); model_signing signs "
                                   "regular files only: publish the files themselves")
            self._fetched = model_dir, {rel: info["digest"] for rel, info in found.items()}
        return self._fetched


def read_signature(path):
    """The bundle at path (a file made by `model_signing sign` or by another run)."""
    try:
        with open(path, "rb") as handle:
            bundle = read_capped(handle, MAX_SIGNATURE_BYTES)
    except OSError as exc:
        raise SigningError(f"cannot read signature {path}: {exc.strerror}; give the bundle "
                           "`model_signing sign ... --signature FILE` wrote")
    if len(bundle) > MAX_SIGNATURE_BYTES:
        raise SigningError(f"signature {path} is larger than {MAX_SIGNATURE_BYTES} bytes; it is "
                           "not a Sigstore bundle")
    where = f"signature {path}"
    return bundle, describe_signer(bundle, where), statement(bundle, where)


def run(module):
    """model_sign's whole run: find the image and its files, sign or check, attach, exit."""
    params = module.params
    result = {"changed": False, "pushed_bytes": 0, "ref": params["ref"]}
    signer = signer_from(module)  # an unusable key fails before the registry is asked
    try:
        given = read_signature(params["signature"]) if params["signature"] else None
        repo, tag, pinned = parse_ref(params["ref"])
        name = check_model_name(params["name"] or repo.rsplit("/", 1)[-1])
        client = module.clients()[0]
        body, media_type, digest = client.get_manifest(repo, pinned or tag)
        where = f"{client.name} {repo}@{digest}"
        if pinned and digest != pinned:
            raise OCIError(f"{client.name}: manifest {repo}@{pinned} hashes to {digest}; the "
                           "registry's copy is corrupt")
        doc, media_type = parse_manifest(body, media_type, where)
        subject = {"mediaType": media_type, "digest": digest, "size": len(body)}
        result["digest"] = digest
        existing = fetch_signatures(client, repo, digest)
        with tempfile.TemporaryDirectory(prefix="edgeml-sign-") as tmp:
            image = Image(module, client, repo, image_layers(client, repo, doc, media_type, where),
                          tmp, name)
            result["shape"] = image.shape
            files = image.files()
            if given:
                bundle, who, (_name, signed) = given
                if signed != files:
                    raise SigningError(f"signature {params['signature']}: this signature is for "
                                       f"other content than {repo}@{digest}: "
                                       f"{differences(signed, files)}. Sign the image's files as "
                                       "a host names them, or attach the right signature")

                def make():
                    return bundle

                def is_same(other):
                    return same_signature(other, bundle)
            else:
                who = signer.signer

                def make():
                    return signer.sign(image.fetch()[0], files)

                def is_same(other):
                    return signer.signed(other, name, files)
            changed, result["signature"], result["pushed_bytes"] = attach(
                client, repo, subject, existing, make, is_same, module.check_mode, who)
    except EdgemlError as exc:
        module.fail_from(exc, **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot lay out the model's files to sign them: {exc}", **result)
    result["changed"] = changed
    if module._diff:
        before = signers(existing)
        result["diff"] = {"before": {"signers": before},
                          "after": {"signers": before + [who] if changed else before}}
    module.exit_json(**result)
