"""Signing keys and certificates for the signing tests, made with cryptography."""

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def ec_key(directory, name="signing", password=None):
    """(private key path, public key path) of a new P-256 key; encrypted with password if given."""
    directory = Path(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = serialization.BestAvailableEncryption(password.encode()) if password \
        else serialization.NoEncryption()
    private = directory / f"{name}.key"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8, encryption))
    public = directory / f"{name}.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _cert(subject, key, issuer_name, issuer_key, ca, path_length=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                            encipher_only=False, decipher_only=False), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


def cert_chain(directory, password=None, leaf_name="ML release signing"):
    """A CA -> intermediate -> leaf chain (leaf key usage digitalSignature), written as PEM:
    {"ca", "intermediate", "certificate", "key"} paths; the leaf key encrypted with password."""
    directory = Path(directory)
    ca_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _role in ("ca", "mid", "leaf"))
    ca = _cert("edgeml test root CA", ca_key, "edgeml test root CA", ca_key, True, 1)
    mid = _cert("edgeml test intermediate", mid_key, "edgeml test root CA", ca_key, True, 0)
    leaf = _cert(leaf_name, leaf_key, "edgeml test intermediate", mid_key, False)
    paths = {name: directory / f"{name}.pem" for name in ("ca", "intermediate", "certificate", "key")}
    for name, cert in (("ca", ca), ("intermediate", mid), ("certificate", leaf)):
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption = serialization.BestAvailableEncryption(password.encode()) if password \
        else serialization.NoEncryption()
    paths["key"].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8, encryption))
    return paths
