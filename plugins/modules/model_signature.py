#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_signature
short_description: Check that a staged model version is signed by someone the host trusts
version_added: 0.1.0
description:
  - Checks the signatures kept with one staged version of a model (the Sigstore bundles
    M(edgeml.fleet.model_sync) fetched from the registry, made by the OpenSSF C(model_signing)
    package or command line in key or certificate mode) against the keys and certificate
    chains the host trusts, before the version may go into service.
  - A version is verified when one of its signatures verifies with a trusted, unrevoked key
    (or with a leaf certificate that chains to a trusted chain and has an allowed identity)
    and the signed statement lists exactly the version's files and digests.
  - The files are not hashed again by default; the signed digests are compared with those the
    store verified when it staged the version. The library hashes the version directory itself
    when the signature hashes otherwise than by file with sha256, when the version holds
    symlinks, or with O(rehash=true).
  - Run it with the runtime's interpreter (the role M(edgeml.fleet.model_deploy) sets
    C(ansible_python_interpreter) to the venv of P(edgeml.fleet.inference_runtime#role)),
    which has C(model_signing), C(cryptography) and C(pyOpenSSL).
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.read_only
requirements:
  - model-signing
  - cryptography
  - pyOpenSSL
options:
  name:
    description: The model's name in the store.
    type: str
    required: true
  digest:
    description: The version to check, the image manifest digest it was staged from
      (C(sha256:) and 64 hex characters).
    type: str
    required: true
  store_dir:
    description: The host model store.
    type: path
    default: /var/lib/edgeml/models
  trust:
    description:
      - Whom the host trusts to sign models, usually the inventory's C(edgeml_model_trust).
      - C(keys) - list of C({name, public_key}), the public key's PEM text (EC P-256, P-384 or
        P-521, as C(model_signing sign key) uses).
      - C(certificates) - list of C({name, chain, identities}); C(chain) is the PEM text of the
        root CA (and intermediates the signatures do not carry); C(identities) lists the leaf
        certificate's allowed common name, SAN e-mail or SAN URI; an empty list allows any leaf
        under the chain.
      - C(revoked) - list of C(sha256:<hex>) fingerprints (of a public key's PEM, as in a
        bundle's key hint, or of a certificate's DER), or PEM public keys or certificates. A
        revoked key or certificate (a certificate's key counts too) never verifies anything.
      - C(policy) - V(required), V(optional) or V(off); the default is V(required) when keys or
        certificates are given, else V(off).
    type: dict
    default: {}
  policy:
    description:
      - Overrides O(trust)'s C(policy).
      - V(required) - the module fails unless the version is verified.
      - V(optional) - an unsigned version passes; a signed one must verify.
      - V(off) - nothing is checked; the module says so and passes.
    type: str
    choices: [required, optional, 'off']
  rehash:
    description: Hash the version's files again with the library instead of trusting the
      digests the store verified when it staged them (slower; for audits).
    type: bool
    default: false
notes:
  - Bundles over 1 MiB are ignored; at most 16 signatures are kept per version.
  - Supports check mode; it only reads, and never reports a change.
seealso:
  - module: edgeml.fleet.model_sync
  - module: edgeml.fleet.model_verify
"""

EXAMPLES = r"""
- name: Refuse a staged version that is not signed by the release key
  edgeml.fleet.model_signature:
    name: fraud-detector
    digest: "{{ staged.digest }}"
    trust: "{{ edgeml_model_trust }}"
  vars:
    ansible_python_interpreter: /opt/edgeml/venv/bin/python

- name: Certificates from the corporate CA, one identity allowed, one old key revoked
  edgeml.fleet.model_signature:
    name: fraud-detector
    digest: sha256:5d1c0a8f3c9e4b7a2f6d8e1c3b5a7f9e2d4c6b8a0f1e3d5c7b9a2e4f6d8c0b1a
    trust:
      certificates:
        - name: corp-ml-ca
          chain: "{{ lookup('file', 'corp-ml-root.pem') }}"
          identities: [ml-release@example.com]
      revoked: ["sha256:0e3b9f5c7a1d2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c5d7e9f2a4b6c8d0e1f"]
  vars:
    ansible_python_interpreter: /opt/edgeml/venv/bin/python
"""

RETURN = r"""
verified:
  description: Whether one of the signatures is valid, trusted, unrevoked and matches the files.
  returned: always
  type: bool
  sample: true
signed:
  description: Whether the version has any signature (of at most 1 MiB).
  returned: always
  type: bool
  sample: true
signer:
  description: Who signed it, C(key <name> (sha256:<16 hex>)) or
    C(certificate <identity> from <trust entry>); null when no trusted signer was found.
  returned: always
  type: str
  sample: key release-2026 (sha256:704cefa3b0a5ae55)
reason_code:
  description: null when verified; else V(unsigned), V(revoked), V(content-mismatch),
    V(other-model), V(bad-signature), V(identity), V(unknown-signer), V(unreadable), or
    V(not-checked) when the policy is V(off). With several signatures, the most telling.
  returned: always
  type: str
  sample: content-mismatch
reason:
  description: One line saying what was found.
  returned: always
  type: str
  sample: "the files differ from what was signed: 'model.onnx' differs"
policy:
  description: The policy applied.
  returned: always
  type: str
  sample: required
signatures:
  description: Each signature and what became of it (C(outcome) is V(verified) or a reason code).
  returned: always
  type: list
  elements: dict
  sample:
    - bundle: sha256:5cee9d00b3093c8933b3ab8e28af6d5042a32dc0303bc9ed092949eb022a09b2
      signer: key release-2026 (sha256:704cefa3b0a5ae55)
      outcome: verified
      reason: signed with key release-2026 (sha256:704cefa3b0a5ae55)
seconds:
  description: How long the check took.
  returned: always
  type: float
  sample: 0.031
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeml.fleet.plugins.module_utils import _signature_check as checker
from ansible_collections.edgeml.fleet.plugins.module_utils._digest import check_digest
from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store
from ansible_collections.edgeml.fleet.plugins.module_utils._trust import normalise

WHAT_TO_DO = {
    "unsigned": "sign it when publishing (model_publish, or model_signing sign) and sync again, "
                "or set edgeml_model_trust.policy",
    "revoked": "publish it again signed with a current key",
    "content-mismatch": "the image or the signature was altered; publish and sign it again",
    "other-model": "the signature belongs to another model; sign this one",
    "bad-signature": "the signature was altered or forged; sign it again",
    "identity": "sign with an allowed identity or add it to the chain's identities",
    "unknown-signer": "add the signer's key or chain to edgeml_model_trust, or sign with a "
                      "trusted one",
    "unreadable": "sign it with model_signing (key or certificate mode)",
}


def run(module):
    params = module.params
    start = time.monotonic()
    result = {"changed": False, "verified": False, "signed": False, "signer": None,
              "reason_code": None, "reason": "", "policy": None, "signatures": []}
    name = params["name"]
    try:
        digest = check_digest(params["digest"], "digest")
        trust = normalise(params["trust"], params["policy"])
        result["policy"] = trust["policy"]
        store = Store(params["store_dir"])
        version_dir = store.version_dir(name, digest)
        record = store.read_record(version_dir)
        if not record or not isinstance(record.get("files"), dict):
            raise EdgemlError(f"model '{name}' {digest} is not staged in {params['store_dir']} "
                              f"(no version record in {version_dir}); run model_sync first")
        bundles = [data for _stem, data in store.signatures(name, digest)]
    except EdgemlError as exc:
        module.fail_json(msg=exc.msg, seconds=round(time.monotonic() - start, 3), **result)
    result["signed"] = bool(bundles)
    if trust["policy"] == "off":
        result.update(reason_code="not-checked", seconds=round(time.monotonic() - start, 3),
                      reason="not checked: the signature policy is off")
        module.exit_json(**result)
    if checker.IMP_ERR:
        module.fail_json(msg=checker.MISSING, exception=checker.IMP_ERR,
                         seconds=round(time.monotonic() - start, 3), **result)
    try:
        outcome = checker.check(record["files"], name, bundles, trust, version_dir,
                                params["rehash"])
    except EdgemlError as exc:
        module.fail_json(msg=exc.msg, seconds=round(time.monotonic() - start, 3), **result)
    result.update(outcome, seconds=round(time.monotonic() - start, 3))
    refuse = not result["verified"] and (trust["policy"] == "required" or result["signed"])
    if refuse:
        todo = WHAT_TO_DO.get(result["reason_code"], "")
        module.fail_json(msg=f"model '{name}' {digest}: {result['reason']}"
                             + (f" ({todo})" if todo else ""), **result)
    if not result["verified"]:
        result["reason"] = f"{result['reason']}; allowed by the policy optional"
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "digest": {"type": "str", "required": True},
            "store_dir": {"type": "path", "default": "/var/lib/edgeml/models"},
            "trust": {"type": "dict", "default": {}},
            "policy": {"type": "str", "choices": ["required", "optional", "off"]},
            "rehash": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
