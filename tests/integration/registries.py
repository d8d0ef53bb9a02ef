"""Real registries for the tests: CNCF distribution on loopback, a token issuer, a flaky link.

- LocalRegistry runs Debian's docker-registry binary on 127.0.0.1 with TLS from the lab CA and
  either htpasswd or token auth.
- TokenIssuer is a small token service: it checks basic credentials and signs a JWT (ES256, with
  its certificate in x5c) that the registry verifies against its rootcertbundle.
- FlakyLink is a TCP proxy that can slow a connection down and cut it after N bytes.
"""

import base64
import datetime
import http.server
import json
import os
import secrets
import select
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import bcrypt
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
PKI = ROOT / "lab" / ".state" / "pki"
USER = "tester"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """GET /token?service=…&scope=… with basic auth -> {"token": JWT}."""

    def __init__(self, directory, password, service="edgeml-test"):
        self.service, self.issuer, self.password = service, "edgeml-test-issuer", password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgeml test token issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .sign(self.key, hashes.SHA256()))
        self.bundle = Path(directory) / "token-issuer.crt"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests = 0
        # More accounts, each granted only some actions on some repositories ({user: {repo:
        # {actions}}}), as a real token service scopes a pull-mode host. USER may do anything.
        self.accounts, self.grants = {USER: password}, {}
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                issuer.requests += 1
                user = next((u for u, pw in issuer.accounts.items() if self.headers.get("Authorization")
                             == "Basic " + base64.b64encode(f"{u}:{pw}".encode()).decode()), None)
                if user is None:
                    self.send_response(401)
                    self.end_headers()
                    return
                query = dict(p.split("=", 1) for p in self.path.split("?", 1)[-1].split("&") if "=" in p)
                scope = requests.utils.unquote(query.get("scope", ""))
                body = json.dumps({"token": issuer.token(scope, user)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        # Over TLS from the lab CA: clients send credentials only to an https realm (or to one
        # on the registry's own host and port).
        from lab import pki  # pylint: disable=import-outside-toplevel
        cert, key = pki.ensure_server_cert("test-token-issuer", ["localhost"])
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(cert), str(key))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.realm = f"https://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, scope, user=USER):
        access = []
        for item in filter(None, scope.split(" ")):
            kind, name, actions = item.split(":")
            actions = actions.split(",")
            if user in self.grants:
                actions = [a for a in actions if a in self.grants[user].get(name, ())]
            access.append({"type": kind, "name": name, "actions": actions})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self):
        self.server.shutdown()


class LocalRegistry:
    """docker-registry on 127.0.0.1, TLS from the lab CA, htpasswd or token auth."""

    def __init__(self, directory, auth="htpasswd"):
        from lab import pki  # pylint: disable=import-outside-toplevel
        self.dir = Path(directory)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.storage = self.dir / "storage"
        self.password = secrets.token_urlsafe(12)
        self.ca = str(PKI / "ca.crt")
        cert, key = pki.ensure_server_cert("test-registry", ["localhost"])
        config = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                              "delete": {"enabled": True}},
                  "http": {"addr": f"127.0.0.1:{self.port}",
                           "tls": {"certificate": str(cert), "key": str(key)}}}
        self.issuer = None
        if auth == "htpasswd":
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text(f"{USER}:{bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(4)).decode()}\n")
            config["auth"] = {"htpasswd": {"realm": "edgeml-test", "path": str(htpasswd)}}
        elif auth == "token":
            self.issuer = TokenIssuer(self.dir, self.password)
            config["auth"] = {"token": {"realm": self.issuer.realm, "service": self.issuer.service,
                                        "issuer": self.issuer.issuer,
                                        "rootcertbundle": str(self.issuer.bundle)}}
        (self.dir / "config.yml").write_text(yaml.safe_dump(config))
        self.log = open(self.dir / "registry.log", "wb")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],  # pylint: disable=consider-using-with
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{self.url}/v2/", verify=self.ca, timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"registry did not start: {(self.dir / 'registry.log').read_text()}")
                time.sleep(0.1)

    def args(self, **extra):
        """model_sync / model_publish arguments for this registry."""
        return dict({"username": USER, "password": self.password, "ca_path": self.ca}, **extra)

    def blob_data_path(self, digest):
        hexdigest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        if self.issuer:
            self.issuer.close()


class FlakyLink:
    """A TCP proxy to host:port. rate: bytes/s towards the client (None: full speed);
    cut_after: close every connection after this many bytes towards the client."""

    def __init__(self, port, rate=None, cut_after=None, cut_once=False):
        self.target = ("127.0.0.1", port)
        self.rate, self.cut_after, self.cut_once = rate, cut_after, cut_once
        self.bytes_to_client = 0
        self.connections = 0  # urllib opens one per request
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _addr = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client):
        upstream = socket.create_connection(self.target)
        sent = 0
        started = time.monotonic()
        try:
            while True:
                ready, _w, _x = select.select([client, upstream], [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        if self.cut_after is not None and sent + len(data) > self.cut_after:
                            data = data[:max(0, self.cut_after - sent)]
                            client.sendall(data)
                            self.bytes_to_client += len(data)
                            if self.cut_once:
                                self.cut_after = None
                            return
                        client.sendall(data)
                        sent += len(data)
                        self.bytes_to_client += len(data)
                        if self.rate:
                            ahead = sent / self.rate - (time.monotonic() - started)
                            if ahead > 0:
                                time.sleep(ahead)
                    else:
                        upstream.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self):
        self.closed = True
        self.listener.close()


def big_file(path, size):
    """A file of random bytes (incompressible, like weights)."""
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 1 << 20))
            out.write(chunk)
            remaining -= len(chunk)
    return path
