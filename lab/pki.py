"""The lab's certificate authority, registry certificates, SSH key and registry password."""

import datetime
import ipaddress
import secrets

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from .topology import REGISTRY_USER, STATE

PKI = STATE / "pki"


def _write_private(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeml lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ensure_ca():
    cert_path, key_path = PKI / "ca.crt", PKI / "ca.key"
    if not cert_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("edgeml lab CA")).issuer_name(_name("edgeml lab CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def ensure_server_cert(name, dns_names):
    """A TLS certificate for a lab registry, valid for its names and loopback."""
    cert_path, key_path = PKI / f"{name}.crt", PKI / f"{name}.key"
    if cert_path.exists():
        return cert_path, key_path
    ca_cert = x509.load_pem_x509_certificate((PKI / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((PKI / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(n) for n in (*dns_names, "localhost")]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def ensure_registry_password():
    """The lab registry's password (random per lab) and its htpasswd file."""
    path = STATE / "registry-password"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(24).encode())
    password = path.read_text().strip()
    htpasswd = PKI / "htpasswd"
    if not htpasswd.exists():
        line = f"{REGISTRY_USER}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()}\n"
        htpasswd.write_text(line)
    return password


def _ensure_ed25519_key(key_path, comment):
    """An OpenSSH ed25519 key pair at key_path (made once); returns "ssh-ed25519 KEY"."""
    if not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.parent.chmod(0o700)
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.OpenSSH,
                                                   serialization.NoEncryption()))
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        key_path.with_suffix(".pub").write_text(f"{public} {comment}\n")
    return " ".join(key_path.with_suffix(".pub").read_text().split()[:2])


def ensure_ssh_key():
    """The controller's SSH key for the lab host managed over real SSH."""
    key_path = STATE / "ssh" / "id_ed25519"
    _ensure_ed25519_key(key_path, "edgeml-lab")
    return key_path


def ensure_bundle_signing_key():
    """The key that signs the lab's offline bundles, and the allowed-signers file that trusts it.

    A real fleet keeps the private key on its build controller and gives technicians (or bakes
    into host images) only the allowed-signers line.
    """
    key_path = STATE / "bundle" / "signing_key"
    public = _ensure_ed25519_key(key_path, "edgeml-lab-bundles")
    allowed = key_path.parent / "allowed_signers"
    if not allowed.exists():
        allowed.write_text(f"bundles@edgeml-lab {public}\n")
    return key_path


def ensure_model_signing_key():
    """The key that signs the lab's models at publish (model-signing, key mode: EC P-256), and
    its public half, which the lab inventory's edgeml_model_trust names.

    A real fleet keeps the private key with its release pipeline; hosts only get public keys.
    """
    key_path = STATE / "model-signing" / "signing_key.pem"
    public_path = key_path.with_name("signing_key.pub")
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        public_path.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path
