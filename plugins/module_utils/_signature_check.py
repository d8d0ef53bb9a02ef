# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: is a staged version signed by someone the host trusts?

Runs in the inference runtime's venv (/opt/edgeml/venv), which has model_signing, cryptography
and pyOpenSSL; IMP_ERR says why they could not be imported.

Every bundle is hostile until model_signing's own verifier (key or certificate mode, through its
public ``verifying.Config``) accepts it. The model's files are not hashed again: the library is
given a hashing configuration whose ``hash()`` returns a manifest built from the version
record's digests, which the store verified when it staged the version. A version holding a file
the signature's ``ignore_paths`` leaves out (git files by default) is refused: every file a
version brings is served or read, so every one must be signed. The library's
own hashing of the version directory is used instead when the signature hashes otherwise than
files + sha256, when the version has symlinks, or when asked (rehash).

Outcome codes, most telling first: revoked, content-mismatch, other-model, bad-signature,
identity, unknown-signer, unreadable (and unsigned when there is no bundle at all).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import pathlib
import posixpath
import shutil
import tempfile
import traceback

from ansible_collections.edgeml.fleet.plugins.module_utils._store import VERSION_FILE
from ansible_collections.edgeml.fleet.plugins.module_utils._trust import (
    TrustError, fingerprint, short)

try:
    from cryptography import exceptions as crypto_exceptions
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from OpenSSL import crypto as openssl
    from model_signing import hashing as ms_hashing
    from model_signing import manifest as ms_manifest
    from model_signing import verifying as ms_verifying
    from model_signing._hashing.hashing import Digest  # the type of a manifest item's digest
except ImportError:
    IMP_ERR = traceback.format_exc()
else:
    IMP_ERR = None

VENV = "/opt/edgeml/venv"
MISSING = (f"model_signing, cryptography and pyOpenSSL are needed to check signatures; run this "
           f"module with the inference runtime's interpreter ({VENV}/bin/python), whose venv "
           "the inference_runtime role installs with them")
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MAX_BUNDLE = 1 << 20  # bigger bundles are ignored, as the store and the referrers code do
MAX_CERTS = 10
RANK = ("revoked", "content-mismatch", "other-model", "bad-signature", "identity",
        "unknown-signer", "unreadable")
SHOWN = 3  # differing files named in a reason


class Unreadable(Exception):
    """The bundle is not a model_signing Sigstore bundle."""


def _said(text, limit=80):
    """Text from a bundle, quoted and cut: it ends up in one-line reasons on terminals."""
    text = str(text)
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def _b64(value, what):
    if not isinstance(value, str) or not value:
        raise Unreadable(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Unreadable(f"{what} is not base64") from None


def parse_bundle(data):
    """What check() needs from a bundle, read defensively (nothing here is trusted yet):
    {mode: key|certificate, hint, certs: [DER], subject, serialization, resources: {name: hex}}.
    Raises Unreadable."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Unreadable("it is not UTF-8 JSON") from None
    if not isinstance(doc, dict) or doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise Unreadable(f"it is not a Sigstore bundle of media type {BUNDLE_MEDIA_TYPE}")
    material, envelope = doc.get("verificationMaterial"), doc.get("dsseEnvelope")
    if not isinstance(material, dict) or not isinstance(envelope, dict):
        raise Unreadable("it has no verificationMaterial or no dsseEnvelope")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs or not isinstance(sigs[0], dict):
        raise Unreadable("its DSSE envelope has no signature")
    _b64(sigs[0].get("sig"), "the DSSE signature")
    info = {}
    if isinstance(material.get("x509CertificateChain"), dict):
        certs = material["x509CertificateChain"].get("certificates")
        if not isinstance(certs, list) or not 0 < len(certs) <= MAX_CERTS or \
                not all(isinstance(c, dict) for c in certs):
            raise Unreadable(f"its certificate chain must hold 1 to {MAX_CERTS} certificates")
        info.update(mode="certificate", certs=[_b64(c.get("rawBytes"), "a certificate")
                                               for c in certs])
    elif isinstance(material.get("publicKey"), dict):
        hint = material["publicKey"].get("hint") or ""
        if not isinstance(hint, str):
            raise Unreadable("its public key hint is not a string")
        info.update(mode="key", hint=hint.lower())
    else:
        raise Unreadable("it names neither a public key nor a certificate chain (keyless "
                         "Sigstore bundles are not supported)")
    try:
        statement = json.loads(_b64(envelope.get("payload"), "the DSSE payload").decode("utf-8"))
        subject = statement["subject"][0]["name"]
        predicate = statement["predicate"]
        serialization_args = predicate["serialization"]
        resources = {r["name"]: r["digest"] for r in predicate["resources"]}
        if not isinstance(serialization_args, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in resources.items()):
            raise TypeError
    except (UnicodeDecodeError, ValueError, RecursionError, KeyError, IndexError, TypeError):
        raise Unreadable("its payload is not a model_signing in-toto statement") from None
    info.update(subject=subject, serialization=serialization_args, resources=resources)
    return info


def _ignored(rel, prefixes):
    return any(rel == p or rel.startswith(p + "/") for p in prefixes)


class RecordHashing:
    """The hashing configuration given to model_signing: its hash() is only called once the
    signature is verified; it returns the record's manifest (or the library's own hashing of
    the version directory when it must)."""

    def __init__(self, files, model_name, serialization_args, version_dir, rehash):
        self.files, self.model_name, self.version_dir = files, model_name, version_dir
        self.args = serialization_args
        self.own = not rehash and not any("link" in info for info in files.values()) \
            and self.args.get("method") == "files" and self.args.get("hash_type") == "sha256"
        self.ignored = []
        self.called = False
        self.result = None

    def add_ignored_paths(self, *, model_path, paths):  # pylint: disable=unused-argument
        self.ignored.extend(str(p) for p in paths)

    def hash(self, model_path, *, files_to_hash=None):  # pylint: disable=unused-argument
        self.called = True
        self.result = self._record_manifest() if self.own else self._library_manifest()
        return self.result

    def left_out(self):
        """The version's files the signature's ignore_paths leave out (none of them is signed)."""
        prefixes = [posixpath.normpath(p) for p in self.ignored]
        return sorted(rel for rel in self.files if _ignored(rel, prefixes))

    def _record_manifest(self):
        left_out = set(self.left_out())
        items = []
        for rel, info in self.files.items():
            if rel not in left_out:
                digest = Digest("sha256", bytes.fromhex(info["digest"].split(":", 1)[1]))
                items.append(ms_manifest.FileManifestItem(path=pathlib.PurePosixPath(rel),
                                                          digest=digest))
        kind = ms_manifest.SerializationType.from_args(
            {"method": "files", "hash_type": "sha256", "allow_symlinks": False})
        return ms_manifest.Manifest(self.model_name, items, kind)

    def _library_manifest(self):
        if not self.version_dir:
            raise ValueError(f"the signature hashes by {_said(self.args.get('method'))} "
                             f"{_said(self.args.get('hash_type'))}, which needs the version's "
                             "files (no version directory given)")
        args, config = self.args, ms_hashing.Config()
        links = args.get("allow_symlinks") is True
        if args.get("method") == "files":
            config.use_file_serialization(hashing_algorithm=args.get("hash_type"),
                                          allow_symlinks=links)
        elif args.get("method") == "shards":
            config.use_shard_serialization(hashing_algorithm=args.get("hash_type"),
                                           shard_size=int(args.get("shard_size")),
                                           allow_symlinks=links)
        else:
            raise ValueError(f"unknown serialization {_said(args.get('method'))}")
        config.set_ignored_paths(paths=[VERSION_FILE] + self.ignored, ignore_git_paths=False)
        config.set_allow_symlinks(links)  # hash() applies this one, not the serializer's
        return config.hash(self.version_dir)


class Trusted:
    """The trust configuration loaded with cryptography, its PEMs written to a private dir."""

    def __init__(self, trust, tmp):
        self.revoked = set(trust["revoked"])
        self.keys = []
        for index, entry in enumerate(trust["keys"]):
            where = f"edgeml_model_trust.keys[{index}] ({entry['name']})"
            try:
                key = serialization.load_pem_public_key(entry["public_key"].encode())
            except ValueError as exc:
                raise TrustError(f"{where}: public_key cannot be loaded: {exc}") from exc
            if not isinstance(key, ec.EllipticCurvePublicKey) or \
                    key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
                raise TrustError(f"{where}: public_key must be an elliptic-curve key on P-256, "
                                 "P-384 or P-521 (what model_signing signs with)")
            path = os.path.join(tmp, f"key-{index}.pem")
            with open(path, "wb") as handle:
                handle.write(_spki_pem(key))
            self.keys.append({"name": entry["name"], "path": path,
                              "fingerprint": fingerprint(_spki_pem(key))})
        self.certificates = []
        for index, entry in enumerate(trust["certificates"]):
            where = f"edgeml_model_trust.certificates[{index}] ({entry['name']})"
            try:
                chain = x509.load_pem_x509_certificates(entry["chain"].encode())
            except ValueError as exc:
                raise TrustError(f"{where}: chain cannot be loaded: {exc}") from exc
            path = os.path.join(tmp, f"chain-{index}.pem")
            with open(path, "w", encoding="ascii") as handle:
                handle.write(entry["chain"])
            self.certificates.append({"name": entry["name"], "path": path,
                                      "identities": entry["identities"],
                                      "fingerprints": _cert_fingerprints(chain)})


def _spki_pem(key):
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_fingerprints(certs):
    """Each certificate's fingerprint (sha256 of DER) and its public key's."""
    found = set()
    for cert in certs:
        found.add(fingerprint(cert.public_bytes(serialization.Encoding.DER)))
        with contextlib.suppress(ValueError, TypeError):
            found.add(fingerprint(_spki_pem(cert.public_key())))
    return found


def _identities(cert):
    """The leaf's CN, SAN e-mails and SAN URIs."""
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    with contextlib.suppress(x509.ExtensionNotFound, ValueError):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.RFC822Name)
        names += san.get_values_for_type(x509.UniformResourceIdentifier)
    return [str(n) for n in names]


def _printable(text):
    """text with what a terminal or a log would act on (newlines, escapes, bidi controls)
    written as escapes: library errors quote file names, which came from the registry."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _outcome(code, reason, signer=None):
    return {"verified": code is None, "signer": signer, "reason_code": code,
            "reason": _printable(reason)}


def _run_library(config, hashing, bundle_path, model_path):
    """model_signing's verify; returns (error or None, signature verified?)."""
    config.set_hashing_config(hashing)
    quiet = io.StringIO()  # it prints warnings; a module's stdout is its JSON result
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            config.verify(model_path, bundle_path)
    except Exception as exc:  # pylint: disable=broad-except  # a hostile bundle raises anything
        return exc, hashing.called
    return None, True


def _content_reason(info, hashing, model_name, error):
    """content-mismatch or other-model, with up to SHOWN differing files."""
    if hashing.result is None:
        return "content-mismatch", f"the files cannot be checked against it: {str(error)[:300]}"
    have = {rd.identifier: rd.digest.digest_hex for rd in hashing.result.resource_descriptors()}
    want = info["resources"]
    problems = [f"{_said(n, 60)} differs" for n in sorted(set(have) & set(want))
                if have[n] != want[n]]
    problems += [f"{_said(n, 60)} is missing" for n in sorted(set(want) - set(have))]
    problems += [f"{_said(n, 60)} is not signed" for n in sorted(set(have) - set(want))]
    shown = ", ".join(problems[:SHOWN]) + (f" (and {len(problems) - SHOWN} more)"
                                           if len(problems) > SHOWN else "")
    if info["subject"] != model_name:
        return "other-model", (f"it signs model {_said(info['subject'])}, not {model_name!r}, "
                               f"and the files differ: {shown or 'in how they were hashed'}")
    return "content-mismatch", f"the files differ from what was signed: {shown or error}"


def _judge(info, hashing, error, verified_sig, model_name):
    """None when the statement matches the files, else (code, reason)."""
    if not verified_sig:
        return None
    left_out = hashing.left_out() if error is None else []
    if left_out:  # whatever the version holds is served or read: all of it must be signed
        shown = ", ".join(_said(n, 60) for n in left_out[:SHOWN]) + (
            f" (and {len(left_out) - SHOWN} more)" if len(left_out) > SHOWN else "")
        return "content-mismatch", (f"the version has files the signature leaves out (its "
                                    f"ignore_paths), so they are not signed: {shown}")
    if error is None and not info["resources"]:
        return "content-mismatch", "the signature covers no files"
    if error is None:
        return None
    return _content_reason(info, hashing, model_name, error)


def _check_key(info, data_path, ctx):
    candidates = [k for k in ctx["trusted"].keys if k["fingerprint"] == "sha256:" + info["hint"]] \
        if info["hint"] else list(ctx["trusted"].keys)
    if not candidates:
        claimed = "sha256:" + info["hint"]
        if claimed in ctx["trusted"].revoked:
            return _outcome("revoked", f"it is signed with the revoked key {short(claimed)}",
                            f"key {short(claimed)}")
        return _outcome("unknown-signer", f"it is signed with key "
                        f"{short(claimed) if info['hint'] else '(no hint)'}, which is not "
                        "trusted (edgeml_model_trust.keys)")
    outcomes = []
    for key in candidates:
        signer = f"key {key['name']} ({short(key['fingerprint'])})"
        hashing = ctx["hashing"](info)
        error, good = _run_library(ms_verifying.Config().use_elliptic_key_verifier(
            public_key=key["path"]), hashing, data_path, ctx["model_path"])
        if not good:
            if isinstance(error, (crypto_exceptions.InvalidSignature, ValueError)) and \
                    info["hint"]:
                outcomes.append(_outcome("bad-signature", f"it claims {signer} but does not "
                                         "verify with it: the bundle was altered or forged"))
            elif info["hint"]:
                outcomes.append(_outcome("unreadable", "model_signing cannot read it: "
                                         f"{type(error).__name__}"))
            else:
                outcomes.append(_outcome("unknown-signer", "it names no key and verifies with "
                                         "none of the trusted keys"))
            continue
        if key["fingerprint"] in ctx["trusted"].revoked:
            outcomes.append(_outcome("revoked", f"it is signed with {signer}, which is revoked",
                                     signer))
            continue
        problem = _judge(info, hashing, error, good, ctx["model_name"])
        outcomes.append(_outcome(*problem, signer) if problem else
                        _outcome(None, f"signed with {signer}", signer))
    return _best(outcomes)


def _check_certificate(info, data_path, ctx):
    try:
        chain = [x509.load_der_x509_certificate(der) for der in info["certs"]]
    except ValueError:
        return _outcome("unreadable", "a certificate of its chain is not DER X.509")
    leaf_names = _identities(chain[0])
    shown_leaf = _said(leaf_names[0] if leaf_names else chain[0].subject.rfc4514_string(), 60)
    bundle_fprs = _cert_fingerprints(chain)
    outcomes = []
    for entry in ctx["trusted"].certificates:
        signer = f"certificate {shown_leaf} from {entry['name']}"
        hashing = ctx["hashing"](info)
        error, good = _run_library(ms_verifying.Config().use_certificate_verifier(
            certificate_chain=[entry["path"]]), hashing, data_path, ctx["model_path"])
        chained = good or isinstance(error, crypto_exceptions.InvalidSignature)
        if not chained:
            why = "does not chain to" if isinstance(error, openssl.X509StoreContextError) \
                else "cannot be used for signing under"
            outcomes.append(_outcome("unknown-signer", f"its certificate {shown_leaf} {why} a "
                                     "trusted chain (edgeml_model_trust.certificates)"))
            continue
        revoked = (bundle_fprs | entry["fingerprints"]) & ctx["trusted"].revoked
        if revoked:
            outcomes.append(_outcome("revoked", f"it is signed with {signer}, and "
                                     f"{short(sorted(revoked)[0])} of that chain is revoked",
                                     signer))
            continue
        if not good:
            outcomes.append(_outcome("bad-signature", f"its certificate {shown_leaf} chains to "
                                     f"{entry['name']} but the signature does not verify"))
            continue
        if entry["identities"] and not set(leaf_names) & set(entry["identities"]):
            outcomes.append(_outcome("identity", f"its certificate {shown_leaf} chains to "
                                     f"{entry['name']}, which allows only "
                                     f"{', '.join(entry['identities'])}"))
            continue
        allowed = [n for n in leaf_names if n in entry["identities"]]
        if allowed:
            signer = f"certificate {_said(allowed[0], 60)} from {entry['name']}"
        problem = _judge(info, hashing, error, good, ctx["model_name"])
        outcomes.append(_outcome(*problem, signer) if problem else
                        _outcome(None, f"signed with {signer}", signer))
    if not outcomes:
        return _outcome("unknown-signer", f"its certificate {shown_leaf} cannot be trusted: no "
                        "certificate chain is trusted (edgeml_model_trust.certificates)")
    return _best(outcomes)


def _best(outcomes):
    verified = [o for o in outcomes if o["verified"]]
    if verified:
        return verified[0]
    return min(outcomes, key=lambda o: RANK.index(o["reason_code"]))


def check(files, model_name, bundles, trust, version_dir=None, rehash=False):
    """Whether one of bundles (raw bytes) is a valid, trusted, unrevoked signature of the
    version whose record lists files ({relpath: {"digest", "size"} | {"link"}}).

    trust is _trust.normalise()'s result. Returns {verified, signed, signer, reason_code,
    reason, signatures: [{bundle, signer, outcome, reason}]}; reason_code is None when
    verified. Raises TrustError when a trusted key or chain cannot be loaded."""
    if IMP_ERR:
        raise RuntimeError(MISSING)
    considered = [data for data in bundles if isinstance(data, bytes) and len(data) <= MAX_BUNDLE]
    result = {"verified": False, "signed": bool(considered), "signer": None,
              "reason_code": "unsigned", "reason": "it has no signature", "signatures": []}
    tmp = tempfile.mkdtemp(prefix="edgeml-signature-")  # mode 0700
    try:
        trusted = Trusted(trust, tmp)  # a key or chain it cannot load is an error, signed or not
        if not considered:
            return result
        bundle_path = os.path.join(tmp, "bundle.json")
        ctx = {"trusted": trusted, "model_name": model_name,
               "model_path": version_dir or os.path.join(tmp, "model"),
               "hashing": lambda info: RecordHashing(files, model_name, info["serialization"],
                                                     version_dir, rehash)}
        outcomes = []
        for data in considered:
            try:
                info = parse_bundle(data)
                with open(bundle_path, "wb") as handle:
                    handle.write(data)
                outcome = (_check_key if info["mode"] == "key" else _check_certificate)(
                    info, bundle_path, ctx)
            except Unreadable as exc:
                outcome = _outcome("unreadable", f"it is not a model_signing Sigstore bundle: "
                                   f"{exc}")
            outcome["bundle"] = "sha256:" + hashlib.sha256(data).hexdigest()
            outcomes.append(outcome)
            result["signatures"].append({"bundle": outcome["bundle"], "signer": outcome["signer"],
                                         "outcome": "verified" if outcome["verified"]
                                         else outcome["reason_code"],
                                         "reason": outcome["reason"]})
        best = _best(outcomes)
        if len(outcomes) > 1:
            best = dict(best, reason=f"{best['reason']} (best of {len(outcomes)} signatures)")
        result.update(verified=best["verified"], signer=best["signer"],
                      reason_code=best["reason_code"], reason=best["reason"])
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
