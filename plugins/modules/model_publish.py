#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_publish
short_description: Publish an ONNX model to an OCI registry as an artifact or a modelcar image
version_added: 0.1.0
description:
  - The "store the model in the registry" step of a pipeline. Pushes an ONNX file and its
    C(edgeml-model.json) as an B(OCI artifact) (each file one layer, named by its
    C(org.opencontainers.image.title) annotation, as C(oras push) makes it) or as a B(modelcar)
    container image (the files under C(/models/) in one tar+gzip layer, as KServe uses).
  - The image is built reproducibly (fixed timestamps and owners), so publishing the same files
    again gives the same digest and changes nothing.
  - With more than one of O(platforms), a modelcar is pushed as an image index with one manifest
    per platform.
  - "Usually run on the controller (C(delegate_to: localhost))."
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
options:
  registry:
    description: Registry to push to, V(https://HOST[:PORT]).
    type: str
    required: true
  repository:
    description: Repository, for example V(models/fraud-detector).
    type: str
    required: true
  tag:
    description: Tag to push.
    type: str
    required: true
  model:
    description: The ONNX file (or any single model file).
    type: path
    required: true
  metadata:
    description: The model's C(edgeml-model.json) (signature, golden vectors, budgets).
    type: path
  extra_files:
    description:
      - More files of the model, for example the external data (weights) file of a large ONNX
        model. Each becomes a layer of an artifact, or a file under C(/models/) of a modelcar.
    type: list
    elements: path
    default: []
  shape:
    description: V(artifact) or V(modelcar).
    type: str
    choices: [artifact, modelcar]
    default: artifact
  platforms:
    description: Platforms of a modelcar image, C(OS/ARCH[/VARIANT]).
    type: list
    elements: str
    default: [linux/amd64]
  annotations:
    description: Extra manifest annotations, for example the training run or the data set.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Computes the digest and reports whether the tag would move; pushes nothing.
  diff_mode:
    support: full
    description: Shows the tag's digest before and after.
  idempotent:
    support: full
    description: The same files give the same digest; the tag is not pushed again.
seealso:
  - module: edgeml.fleet.model_sync
"""

EXAMPLES = r"""
- name: Publish the trained model as an OCI artifact
  edgeml.fleet.model_publish:
    registry: https://registry.example.com
    repository: models/fraud-detector
    tag: "1.1"
    model: build/fraud-detector.onnx
    metadata: build/edgeml-model.json
    username: ci-publisher
    password: "{{ vault_registry_password }}"
  delegate_to: localhost
  register: published

- name: Publish it as a modelcar for arm64 and amd64 sites
  edgeml.fleet.model_publish:
    registry: https://registry.example.com
    repository: modelcars/fraud-detector
    tag: "1.1"
    model: build/fraud-detector.onnx
    metadata: build/edgeml-model.json
    shape: modelcar
    platforms: [linux/amd64, linux/arm64/v8]
  delegate_to: localhost
"""

RETURN = r"""
digest:
  description: Digest of the pushed manifest (or index); pin deployments to it.
  returned: success
  type: str
  sample: sha256:458cf12a0d2f46f58ace88450fc928105fe5db4d0198a288c452169c788849b8
previous_digest:
  description: What the tag pointed at before (null when it did not exist).
  returned: success
  type: str
  sample: null
pushed_bytes:
  description: Blob bytes uploaded (blobs the registry had are not uploaded again).
  returned: success
  type: int
  sample: 36128
ref:
  description: The reference pushed, C(REPOSITORY:TAG).
  returned: success
  type: str
  sample: models/fraud-detector:1.1
"""

import gzip
import hashlib
import io
import json
import os
import tarfile

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    NotFound, OCIError, OCI_INDEX, OCI_MANIFEST, TITLE, parse_ref)

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


def main():
    module = RegistryModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "repository": {"type": "str", "required": True},
            "tag": {"type": "str", "required": True},
            "model": {"type": "path", "required": True},
            "metadata": {"type": "path"},
            "extra_files": {"type": "list", "elements": "path", "default": []},
            "shape": {"type": "str", "default": "artifact", "choices": ["artifact", "modelcar"]},
            "platforms": {"type": "list", "elements": "str", "default": ["linux/amd64"]},
            "annotations": {"type": "dict", "default": {}},
        },
        endpoints=False,
        supports_check_mode=True,
    )
    params = module.params
    repo, tag = params["repository"], params["tag"]
    result = {"changed": False, "pushed_bytes": 0, "ref": f"{repo}:{tag}"}
    try:
        parse_ref(f"{repo}:{tag}")
        files = [(params["model"], MODEL_TYPE)]
        if params["metadata"]:
            files.append((params["metadata"], METADATA_TYPE))
        files.extend((path, DATA_TYPE) for path in params["extra_files"])
        for path, _media_type in files:
            if not os.path.isfile(path):
                module.fail_json(msg=f"{path} is not a file", **result)
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
    except OCIError as exc:
        module.fail_from(exc, **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot read the model files: {exc}", **result)
    if module._diff:
        result["diff"] = {"before": {"digest": result.get("previous_digest")},
                          "after": {"digest": result["digest"]}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
