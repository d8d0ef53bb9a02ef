"""Keys, a CA -> intermediate -> leaf chain, model directories signed with model_signing (its
Python API or its command line), and store versions made from them, for the signature tests."""

import datetime
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import model_signing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store

ONE_DAY = datetime.timedelta(days=1)


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint_of(key):
    return "sha256:" + hashlib.sha256(pem_public(key).encode()).hexdigest()


class KeyPair:
    """An EC P-256 key written as key.pem / key.pub under directory."""

    def __init__(self, directory, name):
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.private = Path(directory) / f"{name}.pem"
        self.private.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.public = pem_public(self.key)
        self.fingerprint = fingerprint_of(self.key)

    def trust(self):
        return {"name": self.name, "public_key": self.public}


def _cert(subject_cn, key, issuer_name, issuer_key, ca, path_len=None, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - ONE_DAY).not_valid_after(now + 30 * ONE_DAY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                        critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.RFC822Name(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Chain:
    """root CA -> intermediate CA -> leaves; files under directory."""

    def __init__(self, directory, name="corp-ml"):
        self.dir = Path(directory)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        self.root = _cert(f"{name} root", self.root_key, root_name, self.root_key, True, 1)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = _cert(f"{name} intermediate", self.int_key, root_name,
                                  self.root_key, True, 0)
        self.root_pem = self.root.public_bytes(serialization.Encoding.PEM).decode()
        self.int_pem = self.intermediate.public_bytes(serialization.Encoding.PEM).decode()
        (self.dir / f"{name}-int.pem").write_text(self.int_pem)
        self.int_path = self.dir / f"{name}-int.pem"

    def leaf(self, email):
        """(private key path, certificate path, certificate) of a code-signing leaf."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(email, key, self.intermediate.subject, self.int_key, False, san=email)
        stem = self.dir / email.replace("@", "_at_")
        Path(f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        Path(f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Path(f"{stem}.key"), Path(f"{stem}.crt"), cert

    def trust(self, name="corp-ml-ca", identities=()):
        return {"name": name, "chain": self.root_pem, "identities": list(identities)}


def make_model(directory, files):
    """A model directory holding files ({relpath: bytes})."""
    directory = Path(directory)
    for rel, data in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(data)
    return directory


def sign_with_key(model_dir, keypair, out):
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=keypair.private).sign(model_dir, out)
    return Path(out).read_bytes()


def sign_with_certificate(model_dir, chain, leaf, out):
    key, cert = leaf[0], leaf[1]
    model_signing.signing.Config().use_certificate_signer(
        private_key=key, signing_certificate=cert, certificate_chain=[chain.int_path]
    ).sign(model_dir, out)
    return Path(out).read_bytes()


def sign_with_cli(model_dir, keypair, out):
    """The upstream command line, as a publisher would run it."""
    cli = Path(sys.executable).parent / "model_signing"
    subprocess.run([str(cli), "sign", "key", str(model_dir), "--private_key", str(keypair.private),
                    "--signature", str(out)], check=True, capture_output=True)
    return Path(out).read_bytes()


def verify_with_cli(model_dir, public_key_path, signature):
    cli = Path(sys.executable).parent / "model_signing"
    return subprocess.run([str(cli), "verify", "key", str(model_dir), "--public_key",
                           str(public_key_path), "--signature", str(signature)],
                          capture_output=True, text=True, check=False)


def stage(store_dir, model, source, tag="v1"):
    """A version of model in the store at store_dir holding source's files; returns
    (Store, digest). The record's digests are those of source's files."""
    store = Store(str(store_dir))
    digest = "sha256:" + hashlib.sha256(f"{model}:{tag}".encode()).hexdigest()

    def fill(tmp):
        files = {}
        for path in sorted(Path(source).rglob("*")):
            rel = path.relative_to(source).as_posix()
            if path.is_symlink():
                os.symlink(os.readlink(path), os.path.join(tmp, rel))
                files[rel] = {"link": os.readlink(path)}
            elif path.is_file():
                os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
                shutil.copyfile(path, os.path.join(tmp, rel))
                data = path.read_bytes()
                files[rel] = {"digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                              "size": len(data)}
        return files

    store.stage(model, digest, {"shape": "artifact"}, fill)
    return store, digest
