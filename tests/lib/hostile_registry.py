"""A small hostile OCI registry for tests: a threaded HTTP(S) server on a loopback address that
serves whatever manifests, blobs and crafted answers a test puts in it, and records every request.

Loopback only, and bounded: an endless answer stops after STREAM_SECONDS or STREAM_CAP bytes,
and every connection times out after TIMEOUT seconds.
"""

import base64
import datetime
import hashlib
import ipaddress
import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
TITLE = "org.opencontainers.image.title"
STREAM_SECONDS = 20
STREAM_CAP = 256 << 20
TIMEOUT = 10
PATH_RE = re.compile(r"\A/v2/(?P<repo>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)\Z")


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- crafted answers: callables a test puts where bytes would be --------------------------------
def raw(data, status=200, headers=None, length=None):
    """data as it is, with Content-Length length (default: its true length)."""
    def answer(handler):
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data) if length is None else length))
        handler.end_headers()
        handler.wfile.write(data)
    return answer


def endless(handler):
    """200 with no Content-Length and zeros until the client hangs up (or the bounds)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.end_headers()
    chunk, sent, deadline = b"\0" * 65536, 0, time.monotonic() + STREAM_SECONDS
    try:
        while sent < STREAM_CAP and time.monotonic() < deadline:
            handler.wfile.write(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the client stopped reading: what it should do


def redirect(location, status=307):
    def answer(handler):
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def bearer(realm):
    """401 with a bearer challenge naming realm."""
    return raw(b"", 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile",scope="x"'})


def self_signed(directory, host="127.0.0.1"):
    """(certificate, key) files for host, the certificate its own CA (give it as ca_path)."""
    # pylint: disable=import-outside-toplevel
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "hostile.crt", directory / "hostile.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; a body without length ends at close
    timeout = TIMEOUT

    def do_GET(self):  # noqa: N802
        self.server.registry.answer(self)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


class HostileRegistry:
    """The registry. Put content in with blob(), manifest(), artifact(); put a crafted answer
    (a callable of the request handler) in blobs[digest], manifests[(repo, reference)] or
    paths[path] (paths answer before any credentials are asked for). basic=(user, password)
    makes it ask for basic credentials; tls=(certificate, key) serves https."""

    def __init__(self, host="127.0.0.1", tls=None, basic=None):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host} is not a loopback address")
        self.blobs, self.manifests, self.paths = {}, {}, {}
        self.requests = []  # (method, path, headers) of every request, in order
        self.basic = basic
        self._server = ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.registry = self
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    # -- content ---------------------------------------------------------------------------------
    def blob(self, data, title=None, media_type="application/octet-stream"):
        """Serve data as a blob; returns its descriptor."""
        self.blobs[digest_of(data)] = data
        descriptor = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
        if title:
            descriptor["annotations"] = {TITLE: title}
        return descriptor

    def manifest(self, repo, tag, doc, media_type=OCI_MANIFEST):
        """Serve doc (a dict, or bytes as they are) under tag (if any) and its digest."""
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        for reference in filter(None, (tag, digest_of(body))):
            self.manifests[(repo, reference)] = (body, media_type)
        return digest_of(body)

    def image(self, config, layers, **extra):
        """An OCI image manifest dict of descriptors."""
        return dict({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                     "layers": layers}, **extra)

    def artifact(self, repo, tag, data, title="model.onnx"):
        """A one-file model artifact (what model_sync stages); returns its manifest digest."""
        doc = self.image(self.blob(b"{}", media_type="application/vnd.oci.image.config.v1+json"),
                         [self.blob(data, title)])
        return self.manifest(repo, tag, doc)

    def authorizations(self):
        return [headers.get("Authorization") for _m, _p, headers in self.requests
                if headers.get("Authorization")]

    # -- answering -------------------------------------------------------------------------------
    def answer(self, handler):
        self.requests.append((handler.command, handler.path, dict(handler.headers)))
        path = handler.path.split("?", 1)[0]
        if path in self.paths:
            return self._send(handler, self.paths[path])
        expected = "Basic " + base64.b64encode(":".join(self.basic or ()).encode()).decode()
        if self.basic and handler.headers.get("Authorization") != expected:
            return raw(b"", 401, {"WWW-Authenticate": 'Basic realm="hostile"'})(handler)
        match = PATH_RE.match(path)
        entry = None
        if match and match["kind"] == "manifests":
            entry = self.manifests.get((match["repo"], match["ref"]))
        elif match:
            entry = self.blobs.get(match["ref"])
        if entry is None:
            body = json.dumps({"errors": [{"code": "NOT_FOUND", "message": "not here"}]}).encode()
            return raw(body, 404, {"Content-Type": "application/json"})(handler)
        return self._send(handler, entry)

    @staticmethod
    def _send(handler, entry):
        if callable(entry):
            return entry(handler)
        body, media_type = entry if isinstance(entry, tuple) else (entry, "application/octet-stream")
        start = re.match(r"bytes=(\d+)-\Z", handler.headers.get("Range") or "")
        if start and int(start[1]) >= len(body):
            return raw(b"", 416)(handler)
        if start:
            return raw(body[int(start[1]):], 206, {"Content-Type": media_type})(handler)
        return raw(body, 200, {"Content-Type": media_type})(handler)
