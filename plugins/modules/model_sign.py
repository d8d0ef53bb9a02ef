#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_sign
short_description: Sign a model image in an OCI registry, or attach a signature made elsewhere
version_added: 0.1.0
description:
  - Signs a model image that another tool published (C(oras push), a CI pipeline, or
    M(edgeml.fleet.model_publish) without O(edgeml.fleet.model_publish#module:signing_key)), and
    attaches the signature to it as an OCI referrer (subject the image's manifest or index; the
    C(sha256-<hex>) referrers tag where the registry has no referrers API), where
    M(edgeml.fleet.model_sync) finds it and the hosts verify it.
  - With O(signing_key), the image's files are downloaded into a temporary directory named after
    the model (O(name)), under exactly the names a host's store gives them (an artifact's layer
    titles; a modelcar's paths under O(model_path)), and signed with the OpenSSF C(model_signing)
    library (a Sigstore bundle holding a DSSE in-toto statement of every file's sha256 digest).
  - With O(signature), a bundle made elsewhere (for example by C(model_signing sign key) on the
    image's files) is attached as it is, after checking that its statement lists exactly the
    image's files and digests. Whether it is valid and trusted is checked on each host.
  - A signature by the same signer over the same files already attached is kept, not made or
    attached again (ECDSA signatures differ every time, so signer and statement are compared).
  - An image index is signed as a whole; all its platforms must hold the same layers.
  - "Usually run on the controller (C(delegate_to: localhost))."
author: edgeml.fleet developers (@edgeml)
requirements:
  - model-signing == 1.1.1 and pyopenssl on the controller
extends_documentation_fragment:
  - edgeml.fleet.registry
  - edgeml.fleet.signing
options:
  registry:
    description: Registry that holds the image, V(https://HOST[:PORT]).
    type: str
    required: true
  ref:
    description: The image, C(REPOSITORY:TAG) or C(REPOSITORY@sha256:DIGEST).
    type: str
    required: true
  name:
    description:
      - The model's name in the signature's statement (the signed directory's name).
      - Defaults to the repository's last component.
    type: str
  model_path:
    description:
      - Where a modelcar image keeps the model; its files are named relative to it, as
        M(edgeml.fleet.model_sync) names them with the same option.
    type: str
    default: /models
  signature:
    description:
      - Path on the controller of a signature (Sigstore bundle) made elsewhere, to attach as it
        is instead of signing. Mutually exclusive with O(signing_key).
    type: path
attributes:
  check_mode:
    support: full
    description: Reports whether a signature would be attached; pushes nothing (a modelcar is still
      downloaded, to know its files).
  diff_mode:
    support: full
    description: Shows the signers of the signatures attached before and after.
  idempotent:
    support: full
    description: A signature by the same signer over the same files is not attached again.
seealso:
  - module: edgeml.fleet.model_publish
  - module: edgeml.fleet.model_sync
"""

EXAMPLES = r"""
- name: Sign the model the CI pipeline pushed with oras
  edgeml.fleet.model_sign:
    registry: https://registry.example.com
    ref: models/fraud-detector:1.2
    signing_key: /etc/edgeml/release-signing.key
    signing_key_password: "{{ vault_signing_key_password }}"
  delegate_to: localhost

- name: Sign with a certificate issued by the company CA
  edgeml.fleet.model_sign:
    registry: https://registry.example.com
    ref: modelcars/fraud-detector@sha256:458cf12a0d2f46f58ace88450fc928105fe5db4d0198a288c452169c788849b8
    signing_key: /etc/edgeml/signing.key
    signing_certificate: /etc/edgeml/signing.crt
    signing_chain: [/etc/edgeml/intermediate.crt]
  delegate_to: localhost

- name: Attach a signature made with `model_signing sign key --signature fraud.sig DIR`
  edgeml.fleet.model_sign:
    registry: https://registry.example.com
    ref: models/fraud-detector:1.2
    signature: build/fraud.sig
  delegate_to: localhost
"""

RETURN = r"""
digest:
  description: Digest of the image's manifest (or index), the signature's subject.
  returned: when the image was found
  type: str
  sample: sha256:458cf12a0d2f46f58ace88450fc928105fe5db4d0198a288c452169c788849b8
ref:
  description: The reference given.
  returned: always
  type: str
  sample: models/fraud-detector:1.2
shape:
  description: V(artifact) or V(modelcar).
  returned: when the image was found
  type: str
  sample: artifact
pushed_bytes:
  description: Blob bytes uploaded.
  returned: always
  type: int
  sample: 3311
signature:
  description:
    - The signature attached. C(referrer) is null in check mode when a new signature would be
      attached (an ECDSA signature differs every time), or when the one found was attached by
      another tool.
  returned: success
  type: dict
  contains:
    referrer:
      description: Digest of the referrer manifest that attaches the signature.
      type: str
      sample: sha256:0b5d3e1f2a8c4e6d7f9a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e
    signer:
      description: C(sha256:<hex>) of the public key (key mode) or the certificate's subject.
      type: str
      sample: CN=ML release signing,O=Example
"""

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._model_signing import (
    SIGNING_ARGS, SIGNING_REQUIRED_BY)
from ansible_collections.edgeml.fleet.plugins.module_utils._sign import run


def main():
    module = RegistryModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "ref": {"type": "str", "required": True},
            "name": {"type": "str"},
            "model_path": {"type": "str", "default": "/models"},
            "signature": {"type": "path"},
        } | SIGNING_ARGS,
        endpoints=False,
        required_by=SIGNING_REQUIRED_BY,
        required_one_of=[("signing_key", "signature")],
        mutually_exclusive=[("signing_key", "signature")],
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
