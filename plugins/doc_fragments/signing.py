# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  signing_key:
    description:
      - Path on the controller of the PEM elliptic curve private key (P-256, P-384 or P-521) that
        signs the model, for example made with C(openssl ecparam -name prime256v1 -genkey -noout).
      - The model's files are signed with the OpenSSF C(model_signing) library (a Sigstore bundle
        holding a DSSE in-toto statement of every file's sha256 digest) under the names a host's
        store gives them, and the signature is attached to the image as an OCI referrer.
      - The key itself never leaves the controller and never appears in results or messages.
    type: path
  signing_key_password:
    description: Password of an encrypted O(signing_key). Never logged or returned.
    type: str
  signing_certificate:
    description:
      - Path on the controller of the PEM certificate of O(signing_key) (certificate mode). Hosts
        then trust the signature through the certificate's chain instead of the public key.
      - Its key usage must allow C(digitalSignature) (or its extended key usage C(codeSigning)).
    type: path
  signing_chain:
    description:
      - Paths on the controller of the intermediate certificates (PEM) from O(signing_certificate)
        up to the root the hosts trust, put into the signature with it.
    type: list
    elements: path
"""
