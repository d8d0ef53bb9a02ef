# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the trust configuration of signed models (standard library only).

The inventory's ``edgeml_model_trust`` says whom a host trusts to sign models:

    keys:         [{name, public_key: PEM}]                    model_signing key mode
    certificates: [{name, chain: PEM (root first or last, intermediates allowed),
                    identities: [leaf CN / SAN e-mail / SAN URI, ...]}]   empty: any leaf
    revoked:      ["sha256:<hex>" | PEM public key | PEM certificate, ...]
    policy:       required | optional | off   (default: required when keys or certificates
                                               are set, else off)

normalise() checks it and returns the same shape with every field present, PEM text tidied,
revoked entries turned into ``sha256:<hex>`` fingerprints, and the policy resolved. Errors name
the entry (``edgeml_model_trust.keys[1] (release-2025)``) and say what to write instead.

Fingerprints: a public key's is the sha256 of its SubjectPublicKeyInfo PEM as model_signing
writes it (the bundle's ``publicKey.hint``); a certificate's is the sha256 of its DER.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError

WHERE = "edgeml_model_trust"
POLICIES = ("required", "optional", "off")
FIELDS = ("keys", "certificates", "revoked", "policy")
MAX_ENTRIES = 64
MAX_PEM = 64 << 10
FINGERPRINT_RE = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}\Z")
PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


class TrustError(EdgemlError):
    """The trust configuration is wrong; .msg names the entry."""


def pem_blocks(text):
    """[(label, DER bytes)] of the PEM blocks in text; ValueError when a block is not base64."""
    blocks = []
    for label, body in PEM_RE.findall(text):
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"its {label} block is not valid base64") from exc
        if not der:
            raise ValueError(f"its {label} block is empty")
        blocks.append((label, der))
    return blocks


def pem(label, der):
    """der as PEM, 64 characters a line, as cryptography (and so model_signing) writes it."""
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def fingerprint(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(fpr):
    """sha256:<first 16 hex>, for reports."""
    return fpr[:len("sha256:") + 16]


def _text(value, where, what):
    if not isinstance(value, str) or not value.strip():
        raise TrustError(f"{where}: {what} must be a non-empty string")
    if len(value) > MAX_PEM:
        raise TrustError(f"{where}: {what} is longer than {MAX_PEM} characters; it should be "
                         "a few PEM blocks")
    return value


def _entries(trust, field):
    value = trust.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TrustError(f"{WHERE}.{field} must be a list, not {type(value).__name__}")
    if len(value) > MAX_ENTRIES:
        raise TrustError(f"{WHERE}.{field} has {len(value)} entries; at most {MAX_ENTRIES}")
    return value


def _named(entry, field, index, allowed, seen):
    where = f"{WHERE}.{field}[{index}]"
    if not isinstance(entry, dict):
        raise TrustError(f"{where} must be a dict with {', '.join(allowed)}")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TrustError(f"{where}: name {name!r} must be 1 to 128 letters, digits, '.', '_', "
                         "'@', ':' or '-', starting with a letter or digit")
    where = f"{where} ({name})"
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise TrustError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; the fields "
                         f"are {', '.join(allowed)}")
    if name in seen:
        raise TrustError(f"{where}: the name {name} is used twice among keys and certificates; "
                         "give each entry its own name")
    seen.add(name)
    return name, where


def _key(entry, index, seen):
    name, where = _named(entry, "keys", index, ("name", "public_key"), seen)
    text = _text(entry.get("public_key"), where, "public_key")
    try:
        blocks = pem_blocks(text)
    except ValueError as exc:
        raise TrustError(f"{where}: public_key is not a PEM public key: {exc}") from exc
    if [label for label, _der in blocks] != ["PUBLIC KEY"]:
        raise TrustError(f"{where}: public_key must be exactly one '-----BEGIN PUBLIC KEY-----' "
                         "block (the .pub file model_signing signs with; not a private key or "
                         "a certificate)")
    return {"name": name, "public_key": pem("PUBLIC KEY", blocks[0][1])}


def _certificate(entry, index, seen):
    name, where = _named(entry, "certificates", index, ("name", "chain", "identities"), seen)
    text = _text(entry.get("chain"), where, "chain")
    try:
        blocks = pem_blocks(text)
    except ValueError as exc:
        raise TrustError(f"{where}: chain is not PEM certificates: {exc}") from exc
    if not blocks or any(label != "CERTIFICATE" for label, _der in blocks):
        raise TrustError(f"{where}: chain must be one or more '-----BEGIN CERTIFICATE-----' "
                         "blocks (the root CA, and intermediates if the signer's bundle does "
                         "not carry them)")
    identities = entry.get("identities")
    if identities is None:
        identities = []
    if not isinstance(identities, list) or not all(isinstance(i, str) and i.strip()
                                                   for i in identities):
        raise TrustError(f"{where}: identities must be a list of non-empty strings (leaf "
                         "certificate CN, SAN e-mail or SAN URI); an empty list allows any leaf")
    return {"name": name, "chain": "".join(pem("CERTIFICATE", der) for _label, der in blocks),
            "identities": sorted({i.strip() for i in identities})}


def _revoked(entry, index):
    where = f"{WHERE}.revoked[{index}]"
    if not isinstance(entry, str) or not entry.strip():
        raise TrustError(f"{where} must be 'sha256:<64 hex>' or PEM text")
    value = entry.strip()
    if value.lower().startswith("sha256:"):
        value = value.lower()
        if not FINGERPRINT_RE.match(value):
            raise TrustError(f"{where}: {entry!r} must be 'sha256:' and 64 hex characters")
        return [value]
    try:
        blocks = pem_blocks(_text(value, where, "the entry"))
    except ValueError as exc:
        raise TrustError(f"{where}: not a fingerprint nor valid PEM: {exc}") from exc
    if not blocks or any(label not in ("PUBLIC KEY", "CERTIFICATE") for label, _der in blocks):
        raise TrustError(f"{where} must be 'sha256:<64 hex>', a PEM public key or a PEM "
                         "certificate")
    return [fingerprint(pem(label, der).encode()) if label == "PUBLIC KEY" else fingerprint(der)
            for label, der in blocks]


def normalise(trust, policy=None):
    """The trust configuration checked and complete; policy (when given) overrides its own."""
    if trust is None:
        trust = {}
    if not isinstance(trust, dict):
        raise TrustError(f"{WHERE} must be a dict with {', '.join(FIELDS)}, not "
                         f"{type(trust).__name__}")
    unknown = sorted(set(trust) - set(FIELDS))
    if unknown:
        raise TrustError(f"{WHERE}: unknown field(s) {', '.join(map(str, unknown))}; the fields "
                         f"are {', '.join(FIELDS)}")
    seen = set()
    keys = [_key(entry, i, seen) for i, entry in enumerate(_entries(trust, "keys"))]
    certificates = [_certificate(entry, i, seen)
                    for i, entry in enumerate(_entries(trust, "certificates"))]
    revoked = sorted({fpr for i, entry in enumerate(_entries(trust, "revoked"))
                      for fpr in _revoked(entry, i)})
    chosen = policy if policy is not None else trust.get("policy")
    if chosen is None:
        chosen = "required" if keys or certificates else "off"
    if chosen not in POLICIES:
        raise TrustError(f"{WHERE}.policy {chosen!r} must be one of {', '.join(POLICIES)}")
    if chosen != "off" and not keys and not certificates:
        raise TrustError(f"{WHERE}: policy is {chosen} but no keys or certificates are trusted, "
                         "so no signature could be accepted; add keys or certificates, or set "
                         "policy: off")
    return {"keys": keys, "certificates": certificates, "revoked": revoked, "policy": chosen}
