# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: signing a model's files on the controller with model_signing.

Decided here: what is signed (the model's files in a temporary directory named after the model,
under exactly the names a host's store gives them: an artifact's layer titles, a modelcar's
paths under model_path), how (model_signing's public API: file serialization, sha256, no
symlinks, nothing ignored; a Sigstore bundle with a DSSE in-toto statement), what identifies a
signer (``sha256:<hex>``, the hash model_signing records of the public key, or the leaf
certificate's subject) and what a bundle states (the model's name and {file: sha256 digest}),
so that a signature already attached is recognised although ECDSA signatures differ every time.

Controller only: model_signing and cryptography are imported guarded (modules report them with
missing_required_lib). The private key and its password never appear in results or messages.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.edgeml.fleet.plugins.module_utils._errors import EdgemlError
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import NotFound
from ansible_collections.edgeml.fleet.plugins.module_utils._referrers import (
    push_signature, signature_manifest)

try:
    import model_signing.hashing
    import model_signing.signing
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
except ImportError as exc:  # reported by the module with missing_required_lib
    HAS_MODEL_SIGNING = False
    IMPORT_ERROR = exc
else:
    HAS_MODEL_SIGNING = True
    IMPORT_ERROR = None

LIBRARY = "model-signing (model-signing==1.1.1 and pyopenssl, on the controller)"
IN_TOTO = "application/vnd.in-toto+json"
PREDICATE = "https://model_signing/signature/v1.0"
CURVES = ("secp256r1", "secp384r1", "secp521r1")  # what model_signing signs with
HINT_RE = re.compile(r"\A[0-9a-f]{64}\Z")  # model_signing's key hint: sha256 of the public key's PEM
MAX_SUBJECT = 512  # characters of a certificate subject shown
SIGNING_ARGS = {  # the options of every module that signs (doc fragment edgeml.fleet.signing)
    "signing_key": {"type": "path"},
    "signing_key_password": {"type": "str", "no_log": True},
    "signing_certificate": {"type": "path"},
    "signing_chain": {"type": "list", "elements": "path"},
}
SIGNING_REQUIRED_BY = {"signing_key_password": "signing_key", "signing_certificate": "signing_key",
                       "signing_chain": "signing_certificate"}


class SigningError(EdgemlError):
    """A key, certificate or bundle could not be used; .msg says what and where."""


# -- what a bundle says ----------------------------------------------------------------------
def _load(bundle, where):
    try:
        doc = json.loads(bundle)
    except (ValueError, RecursionError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise SigningError(f"{where} is not a Sigstore bundle (not a JSON object)")
    return doc


def _identity(doc, where):
    """(description, material) of the signer of a parsed bundle: the key's hint, or the leaf
    certificate (its subject, and its DER bytes, so a new certificate of the same name is
    another signer)."""
    material = doc.get("verificationMaterial")
    material = material if isinstance(material, dict) else {}
    key = material.get("publicKey")
    if isinstance(key, dict) and isinstance(key.get("hint"), str) and HINT_RE.match(key["hint"]):
        return "sha256:" + key["hint"], key["hint"]
    chain = material.get("x509CertificateChain")
    certs = chain.get("certificates") if isinstance(chain, dict) else None
    leaf = certs[0] if isinstance(certs, list) and certs else material.get("certificate")
    raw = leaf.get("rawBytes") if isinstance(leaf, dict) else None
    if isinstance(raw, str):
        try:
            der = base64.b64decode(raw, validate=True)
            subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
            # shown in results and diffs: one printable line of bounded length
            return "".join(c if c.isprintable() else "?" for c in subject)[:MAX_SUBJECT], der
        except (ValueError, binascii.Error):
            pass
    raise SigningError(f"{where} names no signer: neither a public key hint nor a certificate "
                       "(model_signing signs with a key or a certificate)")


def describe_signer(bundle, where="the signature"):
    """Who signed bundle (bytes): 'sha256:<hex>' of the public key, or the leaf certificate's
    subject. Says nothing about whether the signature is valid or trusted."""
    return _identity(_load(bundle, where), where)[0]


def statement(bundle, where="the signature"):
    """(model name, {file: 'sha256:<hex>'}) that bundle's DSSE statement signs."""
    doc = _load(bundle, where)
    envelope = doc.get("dsseEnvelope")
    try:
        if envelope.get("payloadType") != IN_TOTO:
            raise ValueError
        payload = json.loads(base64.b64decode(envelope["payload"], validate=True))
        if payload.get("predicateType") != PREDICATE:
            raise ValueError
        [subject] = payload["subject"]
        name = subject["name"]
        predicate = payload["predicate"]
        if predicate["serialization"]["method"] != "files":
            raise ValueError
        files = {}
        for resource in predicate["resources"]:
            if resource["algorithm"] != "sha256" or resource["name"] in files:
                raise ValueError
            files[resource["name"]] = "sha256:" + bytes.fromhex(resource["digest"]).hex()
        if not isinstance(name, str) or not all(isinstance(f, str) for f in files):
            raise ValueError
    except (AttributeError, KeyError, TypeError, ValueError, RecursionError, binascii.Error):
        raise SigningError(f"{where} holds no model_signing statement of files and sha256 "
                           f"digests (DSSE payload of type {IN_TOTO}, predicate {PREDICATE}, "
                           "serialization by files, hash sha256); sign with "
                           "`model_signing sign` using its defaults")
    return name, files


def same_signature(a, b):
    """Whether bundles a and b are by the same signer over the same statement."""
    try:
        doc_a, doc_b = _load(a, "a"), _load(b, "b")
        return _identity(doc_a, "a")[1] == _identity(doc_b, "b")[1] and statement(a) == statement(b)
    except SigningError:
        return False


# -- the signer ------------------------------------------------------------------------------
def _read(path, option):
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 20)
    except OSError as exc:
        raise SigningError(f"cannot read {option} {path}: {exc.strerror}; give a readable file "
                           "on the controller")


def _private_key(path, password):
    data = _read(path, "signing_key")
    secret = password.encode("utf-8") if password else None
    try:
        key = serialization.load_pem_private_key(data, secret)
    except TypeError:
        raise SigningError(f"signing_key {path} is {'not ' if secret else ''}encrypted: "
                           f"{'remove' if secret else 'give'} signing_key_password")
    except ValueError:
        raise SigningError(f"signing_key {path} could not be loaded: a wrong "
                           "signing_key_password, or not a PEM private key; check the password, "
                           "or make a key with `openssl ecparam -name prime256v1 -genkey -noout`")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in CURVES:
        raise SigningError(f"signing_key {path} is not an elliptic curve key on P-256, P-384 or "
                           "P-521, the keys model_signing signs with")
    return key


def _pipe_path(data):
    """A path that reads data once (a pipe): the decrypted key never touches the disk."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)  # a PEM key is far below the pipe's capacity
    os.close(write_fd)
    return read_fd, f"/dev/fd/{read_fd}"


class Signer:
    """A key (and, in certificate mode, its certificate and chain) ready to sign models."""

    def __init__(self, key_path, password=None, certificate=None, chain=()):
        if not HAS_MODEL_SIGNING:
            raise SigningError(f"signing needs {LIBRARY}: {IMPORT_ERROR}")
        key = _private_key(key_path, password)
        hashing = model_signing.hashing.Config().use_file_serialization(
            hashing_algorithm="sha256", allow_symlinks=False).set_ignored_paths(
                paths=[], ignore_git_paths=False)
        self.config = model_signing.signing.Config().set_hashing_config(hashing)
        if not certificate:
            self.config.use_elliptic_key_signer(private_key=key_path,
                                                password=password.encode("utf-8") if password else None)
            pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            self.material = hashlib.sha256(pem).hexdigest()
            self.signer = "sha256:" + self.material
            return
        cert = self._certificate(certificate, "signing_certificate")
        if cert.public_key() != key.public_key():
            raise SigningError(f"signing_certificate {certificate} is not the certificate of "
                               f"signing_key {key_path}: their public keys differ")
        for path in chain:
            self._certificate(path, "signing_chain")
        # model_signing's certificate signer takes no password: it reads the key decrypted,
        # from a pipe, so the decrypted key is never written to a file.
        unencrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        fd, path = _pipe_path(unencrypted)
        try:
            self.config.use_certificate_signer(private_key=path, signing_certificate=certificate,
                                               certificate_chain=list(chain))
        except ValueError as exc:
            raise SigningError(f"signing_certificate {certificate}: {exc}")
        finally:
            os.close(fd)
        self.material = cert.public_bytes(serialization.Encoding.DER)
        self.signer = cert.subject.rfc4514_string()

    @staticmethod
    def _certificate(path, option):
        try:
            certs = x509.load_pem_x509_certificates(_read(path, option))
        except ValueError:
            raise SigningError(f"{option} {path} is not a PEM certificate")
        return certs[0]

    def signed(self, bundle, name, files):
        """Whether bundle is this signer's over name and exactly files ({file: digest})."""
        try:
            return _identity(_load(bundle, "a signature"), "a signature")[1] == self.material \
                and statement(bundle) == (name, files)
        except SigningError:
            return False  # someone else's, or junk: not a signature of ours

    def sign(self, model_dir, files):
        """The bundle (bytes) signing model_dir, whose name is the model's; its statement must
        list exactly files ({name: digest}), the names and digests the host will check."""
        with tempfile.TemporaryDirectory(prefix="edgeml-sign-") as tmp:
            out = os.path.join(tmp, "model.sig")
            try:
                self.config.sign(model_dir, out)
            except ValueError as exc:  # a symlink, or a file that vanished
                raise SigningError(f"model_signing could not sign {model_dir}: {exc}")
            with open(out, "rb") as handle:
                bundle = handle.read()
        signed = statement(bundle, "the new signature")
        if signed != (os.path.basename(model_dir), files):
            raise SigningError(f"model_signing signed other files than the model's in {model_dir}: "
                               f"{differences(signed[1], files) or 'another model name'}")
        return bundle


# -- the files -------------------------------------------------------------------------------
def place_files(directory, files):
    """Put files ({name in the model: path}) into directory: hard links, copies across file
    systems; never symlinks (model_signing refuses them, and the store has none)."""
    for name, source in files.items():
        dest = os.path.join(directory, name)
        try:
            os.link(source, dest)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(source, dest)


def _names(names, most=5):
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def differences(signed, files):
    """One line saying how signed ({file: digest}) differs from files, for messages."""
    parts = []
    missing = sorted(set(files) - set(signed))
    extra = sorted(set(signed) - set(files))
    changed = sorted(n for n in set(files) & set(signed) if files[n] != signed[n])
    if missing:
        parts.append(f"not signed: {_names(missing)}")
    if extra:
        parts.append(f"signed but not in the image: {_names(extra)}")
    if changed:
        parts.append(f"signed with other content: {_names(changed)}")
    return "; ".join(parts)


# -- attaching to an image -------------------------------------------------------------------
def referrer_of(client, repo, subject, bundle):
    """The digest of the referrer push_signature would have made for bundle, if the registry
    has it (a bundle attached by another tool has another referrer: None)."""
    body, _blobs = signature_manifest(subject, bundle)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    try:
        client.get_manifest(repo, digest)
    except NotFound:
        return None
    return digest


def attach(client, repo, subject, existing, make_bundle, is_same, check_mode, signer):
    """Attach the bundle make_bundle() returns to subject, unless one of existing (the bundles
    attached already) is_same; returns (changed, {"referrer", "signer"}, bytes pushed).

    In check mode nothing is made or pushed (and a new signature's referrer is not known: an
    ECDSA signature differs every time)."""
    for bundle in existing:
        if is_same(bundle):
            return False, {"referrer": referrer_of(client, repo, subject, bundle), "signer": signer}, 0
    if check_mode:
        return True, {"referrer": None, "signer": signer}, 0
    referrer, pushed = push_signature(client, repo, subject, make_bundle())
    return True, {"referrer": referrer, "signer": signer}, pushed


def signer_from(module):
    """The Signer the module's signing options make, None without signing_key; fails the module
    on a missing library or an unusable key or certificate, before anything is pushed."""
    params = module.params
    if not params.get("signing_key"):
        return None
    if not HAS_MODEL_SIGNING:
        module.fail_json(msg=missing_required_lib(LIBRARY), exception=str(IMPORT_ERROR))
    try:
        return Signer(params["signing_key"], params["signing_key_password"],
                      params["signing_certificate"], params["signing_chain"] or ())
    except SigningError as exc:
        module.fail_json(msg=exc.msg)
        raise  # not reached


def sign_files(signer, name, files, fill):
    """Sign model name whose files ({name: digest}) fill(directory) puts into a directory."""
    with tempfile.TemporaryDirectory(prefix="edgeml-model-") as tmp:
        model_dir = os.path.join(tmp, name)
        os.mkdir(model_dir, 0o700)
        fill(model_dir)
        return signer.sign(model_dir, files)


def signers(bundles):
    """Who signed each of bundles (those naming no signer are left out), for diffs."""
    found = []
    for bundle in bundles:
        try:
            found.append(describe_signer(bundle))
        except SigningError:
            pass
    return found
