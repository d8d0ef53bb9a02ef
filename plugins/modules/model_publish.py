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
  - With O(signing_key), the model is signed after it is pushed (or when the tag already points at
    it) and the signature is attached to the image as an OCI referrer (subject the pushed manifest
    or index; the C(sha256-<hex>) referrers tag where the registry has no referrers API). A
    signature by the same signer over the same files already attached is kept, not made again.
    The statement names the model after the repository's last component; the files are named as a
    host's store names them (the file names, for both shapes).
  - "Usually run on the controller (C(delegate_to: localhost))."
author: edgeml.fleet developers (@edgeml)
requirements:
  - model-signing == 1.1.1 and pyopenssl on the controller, only to sign (O(signing_key))
extends_documentation_fragment:
  - edgeml.fleet.registry
  - edgeml.fleet.signing
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
  reference_sample:
    description:
      - The model's reference inputs (a sample of the training or validation data), to detect
        drift in the field against. Their statistics are written into the published
        C(edgeml-model.json) as its C(reference) entry (the file given in O(metadata) is not
        changed). Per input and per feature (a column, or an image channel), the count, mean,
        standard deviation, minimum, maximum and a histogram of O(reference_bins) equal-width bins.
      - Where ONNX Runtime and numpy are installed (the controller of the lab has them), the model
        is run on the sample and its output distribution written too (C(reference.outputs));
        M(edgeml.fleet.model_drift) compares live outputs with it.
      - An C(.npy) file (C order, a number dtype; object arrays are never read) or a C(.csv) file
        (numbers, an optional header row naming the columns) for a model with one input; an
        C(.npz) file with one C(NAME.npy) per input for several. At most 256 MiB.
      - Rank 2 arrays are one feature per column (up to 1024), rank 4 arrays with 1, 3 or 4
        channels on axis 1 or 3 one per channel; anything else is summarised as one feature.
      - Requires O(metadata).
    type: path
  reference_bins:
    description: Histogram bins per feature of O(reference_sample), 1 to 100.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: Computes the digest and reports whether the tag would move or a signature would be
      attached; pushes nothing.
  diff_mode:
    support: full
    description: Shows the tag's digest (and, when signing, the signers attached) before and after.
  idempotent:
    support: full
    description: The same files give the same digest; the tag is not pushed again, and a signature
      by the same signer over the same files is not attached again.
seealso:
  - module: edgeml.fleet.model_sync
  - module: edgeml.fleet.model_sign
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

- name: Publish and sign it with the release key
  edgeml.fleet.model_publish:
    registry: https://registry.example.com
    repository: models/fraud-detector
    tag: "1.2"
    model: build/fraud-detector.onnx
    metadata: build/edgeml-model.json
    signing_key: /etc/edgeml/release-signing.key
    signing_key_password: "{{ vault_signing_key_password }}"
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
reference:
  description: Per input of O(reference_sample), its C(layout), C(samples) and C(features) summarised.
  returned: when reference_sample is given
  type: dict
  sample: {"transaction": {"layout": "features", "samples": 2000, "features": 8}}
reference_outputs:
  description:
    - The outputs whose distribution on O(reference_sample) was written into the reference (the
      model run on the sample with ONNX Runtime; labels counted per value, scores summarised per
      column), or why there are none (no ONNX Runtime where the module ran).
  returned: when reference_sample is given
  type: raw
  sample: [label, probabilities]
ref:
  description: The reference pushed, C(REPOSITORY:TAG).
  returned: success
  type: str
  sample: models/fraud-detector:1.1
signature:
  description:
    - The signature attached to the image (with O(signing_key)). C(referrer) is null in check
      mode when a new signature would be made, or when the one found was attached by another tool.
  returned: when signing_key is given
  type: dict
  contains:
    referrer:
      description: Digest of the referrer manifest that attaches the signature.
      type: str
      sample: sha256:0b5d3e1f2a8c4e6d7f9a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e
    signer:
      description: C(sha256:<hex>) of the public key (key mode) or the certificate's subject.
      type: str
      sample: sha256:5be6565a398f823dd5fa741d3476471ea1a6b392c7a658b01b245e5e6fefc2b7
"""

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._model_signing import (
    SIGNING_ARGS, SIGNING_REQUIRED_BY)
from ansible_collections.edgeml.fleet.plugins.module_utils._publish import run


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
            "reference_sample": {"type": "path"},
            "reference_bins": {"type": "int", "default": 10},
        } | SIGNING_ARGS,
        endpoints=False,
        required_by=SIGNING_REQUIRED_BY,
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
