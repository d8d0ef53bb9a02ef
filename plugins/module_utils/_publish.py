# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what model_publish pushes, an ONNX model as an OCI image.

Decided here: how a model and its files become an OCI artifact (one layer per file, named by
its title) or a modelcar image (one reproducible tar+gzip layer under models/, an image index
when there are several platforms), that the same files always give the same digest, and when
the registry's tag already points at it (nothing pushed).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import file_digest
from ansible_collections.edgeml.fleet.plugins.module_utils._golden import GoldenError, read_metadata
from ansible_collections.edgeml.fleet.plugins.module_utils._model_signing import (
    SigningError, attach, place_files, sign_files, signer_from, signers)
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    NotFound, OCIError, OCI_INDEX, OCI_MANIFEST, TITLE, parse_ref)
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import fetch_signatures
from ansible_collections.edgeml.fleet.plugins.module_utils._refoutputs import reference_outputs
from ansible_collections.edgeml.fleet.plugins.module_utils._refstats import SampleError, reference_stats


MODEL_TYPE = "application/vnd.edgeml.model.onnx"
METADATA_TYPE = "application/vnd.edgeml.model.metadata.v1+json"
DATA_TYPE = "application/vnd.edgeml.model.data"
ARTIFACT_CONFIG_TYPE = "application/vnd.edgeml.model.config.v1+json"
IMAGE_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _blob(data, media_type, **extra):
    return dict({"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                 "size": len(data)}, **extra), data


def _canonical(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def artifact(files, annotations):
    blobs = []
    config, config_data = _blob(b"{}", ARTIFACT_CONFIG_TYPE)
    blobs.append((config, config_data))
    layers = []
    for path, media_type in files:
        with open(path, "rb") as handle:
            layer, data = _blob(handle.read(), media_type,
                                annotations={TITLE: os.path.basename(path)})
        layers.append(layer)
        blobs.append((layer, data))
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                "layers": layers, "annotations": annotations}
    return manifest, blobs


def _modelcar_layer(files):
    """One reproducible tar+gzip layer holding models/<file> for each file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("models")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(info)
        for path, _media_type in files:
            with open(path, "rb") as handle:
                data = handle.read()
            info = tarfile.TarInfo(f"models/{os.path.basename(path)}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(tar_bytes)
    return packed.getvalue(), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def modelcar(files, annotations, platforms):
    layer_data, diff_id = _modelcar_layer(files)
    layer, _data = _blob(layer_data, TAR_GZIP)
    blobs = [(layer, layer_data)]
    manifests = []
    for spec in platforms:
        parts = spec.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise OCIError(f"platform '{spec}' is not OS/ARCH or OS/ARCH/VARIANT")
        platform = {"os": parts[0], "architecture": parts[1]}
        if len(parts) == 3:
            platform["variant"] = parts[2]
        config_doc = dict(platform, rootfs={"type": "layers", "diff_ids": [diff_id]},
                          config={"Labels": annotations})
        config, config_data = _blob(_canonical(config_doc), IMAGE_CONFIG_TYPE)
        blobs.append((config, config_data))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                    "layers": [layer], "annotations": annotations}
        manifests.append((platform, manifest))
    if len(manifests) == 1:
        return manifests[0][1], blobs, []
    children = []
    entries = []
    for platform, manifest in manifests:
        body = _canonical(manifest)
        children.append((body, OCI_MANIFEST))
        entries.append({"mediaType": OCI_MANIFEST, "size": len(body), "platform": platform,
                        "digest": "sha256:" + hashlib.sha256(body).hexdigest()})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
             "annotations": annotations}
    return index, blobs, children


def sign(module, client, repo, subject, files, signer, result):
    """Attach signer's signature of files ([(path, media type)]) to subject, unless the same
    signer's signature of the same files is attached already. Both shapes name each file by
    its base name on a host (artifact: the layer title; modelcar: models/<name>)."""
    name = repo.rsplit("/", 1)[-1]
    paths = {os.path.basename(path): path for path, _media_type in files}
    digests = {title: file_digest(path) for title, path in paths.items()}
    existing = fetch_signatures(client, repo, subject["digest"])
    changed, result["signature"], pushed = attach(
        client, repo, subject, existing,
        lambda: sign_files(signer, name, digests, lambda target: place_files(target, paths)),
        lambda bundle: signer.signed(bundle, name, digests), module.check_mode, signer.signer)
    result["changed"] |= changed
    result["pushed_bytes"] += pushed
    before = signers(existing)
    return before, before + [signer.signer] if changed else before


def with_reference(module, metadata, sample, bins, model_path):
    """A copy of the metadata file (same name, in the module's temporary directory) with the
    reference sample's statistics as its `reference` entry (the model's outputs on the sample
    too, where ONNX Runtime is installed); the summaries for the result."""
    doc = read_metadata(metadata)
    if not doc:
        raise GoldenError(f"{metadata}: no such file")
    names = [entry["name"] for entry in doc.get("inputs") or []
             if isinstance(entry, dict) and isinstance(entry.get("name"), str)]
    doc["reference"] = reference_stats(sample, bins, names or None)
    outputs, why_not = reference_outputs(model_path, sample)
    if outputs is not None:
        doc["reference"]["outputs"] = outputs
    path = os.path.join(tempfile.mkdtemp(dir=module.tmpdir), os.path.basename(metadata))
    with open(path, "w", encoding="utf-8") as handle:
        # Sorted and fixed: the same model and sample always give the same bytes (and digest).
        json.dump(doc, handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")
    summary = {name: {"layout": entry["layout"], "samples": entry["samples"],
                      "features": len(entry["features"])}
               for name, entry in doc["reference"]["inputs"].items()}
    return path, summary, sorted(outputs) if outputs is not None else f"not summarised: {why_not}"


def run(module):
    """model_publish's whole run: build the image, push what the tag lacks, sign, exit or fail."""
    params = module.params
    repo, tag = params["repository"], params["tag"]
    result = {"changed": False, "pushed_bytes": 0, "ref": f"{repo}:{tag}"}
    signer = signer_from(module)  # an unusable key fails before anything is pushed
    signed = None
    try:
        parse_ref(f"{repo}:{tag}")
        files = [(params["model"], MODEL_TYPE)]
        metadata = params["metadata"]
        if params["reference_sample"]:
            if not metadata:
                module.fail_json(msg="reference_sample needs metadata: its statistics are written "
                                     "into the model's edgeml-model.json", **result)
            try:
                metadata, result["reference"], result["reference_outputs"] = with_reference(
                    module, metadata, params["reference_sample"], params["reference_bins"], params["model"])
            except (SampleError, GoldenError) as exc:
                module.fail_json(msg=f"reference_sample: {exc}", **result)
        if metadata:
            files.append((metadata, METADATA_TYPE))
        files.extend((path, DATA_TYPE) for path in params["extra_files"])
        for path, _media_type in files:
            if not os.path.isfile(path):
                module.fail_json(msg=f"{path} is not a file", **result)
        names = [os.path.basename(path) for path, _media_type in files]
        if len(set(names)) != len(names):
            module.fail_json(msg=f"two of the model's files have the same name ({', '.join(names)}); "
                                 "a host would keep only one of them: rename one", **result)
        annotations = {str(k): str(v) for k, v in params["annotations"].items()}
        if params["shape"] == "artifact":
            top, blobs = artifact(files, annotations)
            children = []
        else:
            top, blobs, children = modelcar(files, annotations, params["platforms"])
        body = _canonical(top)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        client = module.clients()[0]
        try:
            result["previous_digest"] = client.get_manifest(repo, tag)[2]
        except NotFound:
            result["previous_digest"] = None
        result["digest"] = digest
        if result["previous_digest"] != digest:
            result["changed"] = True
            if not module.check_mode:
                for descriptor, data in blobs:
                    result["pushed_bytes"] += client.push_blob(repo, descriptor["digest"], data,
                                                               descriptor["size"])
                for child, media_type in children:
                    client.put_manifest(repo, "sha256:" + hashlib.sha256(child).hexdigest(),
                                        child, media_type)
                client.put_manifest(repo, tag, body, top["mediaType"])
        if signer:
            subject = {"mediaType": top["mediaType"], "digest": digest, "size": len(body)}
            signed = sign(module, client, repo, subject, files, signer, result)
    except (OCIError, SigningError) as exc:
        module.fail_from(exc, **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot read the model files: {exc}", **result)
    if module._diff:
        result["diff"] = {"before": {"digest": result.get("previous_digest")},
                          "after": {"digest": result["digest"]}}
        if signed:
            result["diff"]["before"]["signers"], result["diff"]["after"]["signers"] = signed
    module.exit_json(**result)
