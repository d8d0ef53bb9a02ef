# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: a client for the OCI distribution API (pull and push).

Standard library and ansible.module_utils only: it runs on edge hosts. Credentials are held in
the client and never put into messages or return values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import socket
import ssl
import queue
import threading
import time
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin, urlsplit

from ansible.module_utils.urls import Request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MACHINE_TO_OCI = {"x86_64": ("amd64", None), "amd64": ("amd64", None),
                  "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8")}


class BrokenTransfer(Exception):
    """A download ended early; it can resume where it stopped."""


class OCIError(Exception):
    """A registry operation failed; the message says what, where and what to do."""

    retry_elsewhere = False  # true where another endpoint might do better

    def __init__(self, msg, endpoint=None, status=None):
        super().__init__(msg)
        self.msg, self.endpoint, self.status = msg, endpoint, status


class Unreachable(OCIError):
    retry_elsewhere = True


class NotFound(OCIError):
    retry_elsewhere = True  # a mirror may lack what core has


class AuthError(OCIError):
    pass


class DigestMismatch(OCIError):
    retry_elsewhere = True


def parse_ref(ref):
    """'repo:tag', 'repo@sha256:…' or 'repo' (tag latest) -> (repo, tag or None, digest or None)."""
    if not isinstance(ref, str) or not ref:
        raise OCIError(f"model reference {ref!r} is empty; expected REPOSITORY:TAG or REPOSITORY@sha256:DIGEST")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise OCIError(f"'{digest}' is not a sha256 digest (sha256: and 64 hex characters)")
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise OCIError(f"'{tag}' is not a valid tag")
    if not REPO_RE.match(ref):
        raise OCIError(f"'{ref}' is not a repository name (lower-case path like models/fraud-detector; "
                       "give the registry itself in the registries option, not in the reference)")
    if tag is None and digest is None:
        tag = "latest"
    return ref, tag, digest


def host_platform(machine=None):
    machine = machine or platform.machine()
    arch, variant = MACHINE_TO_OCI.get(machine.lower(), (machine.lower(), None))
    return {"os": "linux", "architecture": arch, "variant": variant}


def choose_platform(index, where, want=None):
    """The manifest descriptor of an image index that fits this host's platform."""
    want = want or host_platform()
    entries = index.get("manifests") or []
    if len(entries) == 1 and not entries[0].get("platform"):
        return entries[0]  # an index of one artifact
    fits = [m for m in entries if (m.get("platform") or {}).get("os", "linux") == want["os"]
            and (m.get("platform") or {}).get("architecture") == want["architecture"]]
    if want.get("variant") and len(fits) > 1:
        fits = [m for m in fits if m["platform"].get("variant") in (None, want["variant"])] or fits
    if not fits:
        have = sorted({"/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
                       for p in (m.get("platform") or {} for m in entries)})
        raise OCIError(f"{where} has no image for {want['os']}/{want['architecture']}; "
                       f"it has: {', '.join(have) or 'no platforms'}")
    return fits[0]


def sha256_file(path, prefix=None):
    digest = hashlib.sha256() if prefix is None else prefix
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest


def _challenge(header):
    """Parse 'Bearer realm="…",service="…",scope="…"' -> ('bearer', {…})."""
    scheme, _sep, rest = (header or "").strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryClient:
    """One registry endpoint: https://host[:port]."""

    def __init__(self, url, username=None, password=None, validate_certs=True, ca_path=None,
                 timeout=30):
        self.url = url.rstrip("/")
        self.name = self.url
        self._creds = (username, password) if username else None
        self._tokens = {}  # scope -> bearer token
        self._basic = False
        self._http = Request(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout,
                             follow_redirects="none", http_agent="edgeml.fleet")
        self.timeout = timeout

    # -- HTTP ------------------------------------------------------------------------------
    def _auth_header(self, scope):
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self._creds:
            raw = f"{self._creds[0]}:{self._creds[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _fetch_token(self, params, scope):
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.name} asked for a bearer token but named no realm", self.name)
        query = {k: v for k, v in (("service", params.get("service")),
                                   ("scope", scope or params.get("scope"))) if v}
        headers = {}
        if self._creds:
            raw = f"{self._creds[0]}:{self._creds[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        try:
            resp = self._http.open("GET", realm + ("&" if "?" in realm else "?") + urlencode(query),
                                   headers=headers)
            body = json.loads(resp.read())
        except HTTPError as exc:
            if exc.code in (401, 403):
                raise AuthError(f"{self.name}: the token service {realm} refused the credentials "
                                f"(HTTP {exc.code}); check username and password", self.name, exc.code)
            raise Unreachable(f"{self.name}: the token service {realm} answered HTTP {exc.code}",
                              self.name, exc.code)
        except (URLError, OSError, ValueError) as exc:
            raise Unreachable(f"{self.name}: no token from {realm}: {exc}", self.name)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthError(f"{self.name}: the token service {realm} returned no token", self.name)
        self._tokens[scope] = token

    def request(self, method, path, scope, headers=None, data=None, ok=(200,), what=None):
        """Send a request, answering one auth challenge; return the open response."""
        url = path if path.startswith(("http://", "https://")) else self.url + path
        what = what or f"{method} {path}"
        for attempt in (1, 2):
            all_headers = dict(headers or {})
            all_headers.update(self._auth_header(scope))
            try:
                resp = self._http.open(method, url, data=data, headers=all_headers)
                if resp.status in ok:
                    return resp
                raise OCIError(f"{self.name}: {what}: unexpected HTTP {resp.status}", self.name,
                               resp.status)
            except HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    scheme, params = _challenge(exc.headers.get("WWW-Authenticate"))
                    if scheme == "bearer":
                        self._fetch_token(params, scope)
                        continue
                    if scheme == "basic" and self._creds and not self._basic:
                        self._basic = True
                        continue
                if exc.code in ok:
                    return exc
                raise self._http_error(exc, what)
            except ssl.SSLError as exc:
                raise Unreachable(self._tls_message(exc), self.name)
            except URLError as exc:
                if isinstance(exc.reason, ssl.SSLError):
                    raise Unreachable(self._tls_message(exc.reason), self.name)
                raise Unreachable(f"{self.name} is unreachable: {exc.reason}", self.name)
            except (socket.timeout, TimeoutError):
                raise Unreachable(f"{self.name} did not answer within {self.timeout} s", self.name)
            except (ConnectionError, OSError) as exc:
                raise Unreachable(f"{self.name} is unreachable: {exc}", self.name)
        raise AuthError(f"{self.name}: {what}: still unauthorized after authenticating", self.name, 401)

    def _tls_message(self, exc):
        return (f"{self.name}: TLS failed: {getattr(exc, 'reason', None) or exc}. The registry's "
                "certificate does not verify; give the CA that signed it with ca_path (or the "
                "endpoint's ca_file), or fix the certificate; validate_certs=false is for labs only")

    def _http_error(self, exc, what):
        try:
            detail = json.loads(exc.read() or b"{}").get("errors", [{}])[0].get("message", "")
        except (ValueError, AttributeError, IndexError, OSError):
            detail = ""
        detail = f" ({detail})" if detail else ""
        if exc.code == 401:
            hint = "check username and password" if self._creds else "the registry needs credentials"
            return AuthError(f"{self.name}: {what}: unauthorized (HTTP 401){detail}; {hint}",
                             self.name, 401)
        if exc.code == 403:
            return AuthError(f"{self.name}: {what}: forbidden (HTTP 403){detail}", self.name, 403)
        if exc.code == 404:
            return NotFound(f"{self.name}: {what}: not found (HTTP 404){detail}", self.name, 404)
        if exc.code == 429 or exc.code >= 500:
            hint = ""
            if exc.code in (502, 503, 504) or exc.code == 500 and "unknown error" in detail:
                # What a pull-through mirror answers for content it has not cached while its
                # upstream is out of reach.
                hint = ("; if this is a site mirror, it does not have this content cached and "
                        "cannot reach its upstream registry")
            return Unreachable(f"{self.name}: {what}: HTTP {exc.code}{detail}{hint}", self.name,
                               exc.code)
        return OCIError(f"{self.name}: {what}: HTTP {exc.code}{detail}", self.name, exc.code)

    # -- pull ------------------------------------------------------------------------------
    def get_manifest(self, repo, reference):
        """-> (body bytes, media type, digest) of a manifest or index."""
        accept = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull",
                            headers={"Accept": accept}, what=f"manifest {repo}:{reference}"
                            if not reference.startswith("sha256:") else f"manifest {repo}@{reference}")
        body = resp.read()
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        return body, media_type, "sha256:" + hashlib.sha256(body).hexdigest()

    def open_blob(self, repo, digest, offset=0):
        """An open response for a blob from offset (status 206) or whole (200)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"blob {digest[:19]}… of {repo}"
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull",
                            headers=headers, ok=(200, 206, 307, 302, 303, 416), what=what)
        status = getattr(resp, "status", None) or resp.code
        if status in (302, 303, 307):  # storage redirect: no registry credentials to it
            location = urljoin(self.url + f"/v2/{repo}/blobs/{digest}", resp.headers["Location"])
            try:
                resp = self._http.open("GET", location, headers=headers, follow_redirects="all")
            except HTTPError as exc:
                raise self._http_error(exc, what)
            status = resp.status
        return resp, status

    # -- push ------------------------------------------------------------------------------
    def blob_exists(self, repo, digest):
        try:
            self.request("HEAD", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull,push")
            return True
        except NotFound:
            return False

    def push_blob(self, repo, digest, path_or_bytes, size):
        """Upload a blob in one PUT (skipped when the registry has it)."""
        scope = f"repository:{repo}:pull,push"
        if self.blob_exists(repo, digest):
            return 0
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,),
                            what=f"start upload to {repo}")
        location = urljoin(self.url + "/", resp.headers["Location"])
        location += ("&" if "?" in location else "?") + urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(path_or_bytes, bytes):
            self.request("PUT", location, scope, headers=headers, data=path_or_bytes, ok=(201,),
                         what=f"upload {digest[:19]}… to {repo}")
        else:
            with open(path_or_bytes, "rb") as data:
                self.request("PUT", location, scope, headers=headers, data=data, ok=(201,),
                             what=f"upload {digest[:19]}… to {repo}")
        return size

    def put_manifest(self, repo, tag, body, media_type):
        self.request("PUT", f"/v2/{repo}/manifests/{tag}", f"repository:{repo}:pull,push",
                     headers={"Content-Type": media_type}, data=body, ok=(201,),
                     what=f"manifest {repo}:{tag}")
        return "sha256:" + hashlib.sha256(body).hexdigest()


class LayoutClient:
    """An OCI image layout directory (as in an offline bundle), read like a registry.

    Images are found by the org.opencontainers.image.ref.name annotation of index.json, which
    may be 'repo:tag' or just 'tag', or by digest.
    """

    def __init__(self, path):
        self.path = path
        self.name = f"oci-layout:{path}"

    def _index(self):
        try:
            with open(os.path.join(self.path, "oci-layout"), encoding="utf-8") as handle:
                json.load(handle)
            with open(os.path.join(self.path, "index.json"), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            raise Unreachable(f"{self.name} is not a readable OCI image layout: {exc}", self.name)

    def _blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1])

    def get_manifest(self, repo, reference):
        if not reference.startswith("sha256:"):
            names = (f"{repo}:{reference}", reference)
            found = [m for m in self._index().get("manifests", [])
                     if (m.get("annotations") or {}).get(REF_NAME) in names]
            if not found:
                raise NotFound(f"{self.name} has no image named {repo}:{reference}", self.name)
            reference, media_type = found[0]["digest"], found[0].get("mediaType", "")
        else:
            media_type = ""
        try:
            with open(self._blob_path(reference), "rb") as handle:
                body = handle.read()
        except OSError:
            raise NotFound(f"{self.name} has no manifest {reference}", self.name)
        if not media_type:
            media_type = json.loads(body).get("mediaType", OCI_MANIFEST)
        return body, media_type, "sha256:" + hashlib.sha256(body).hexdigest()

    def open_blob(self, repo, digest, offset=0):
        try:
            handle = open(self._blob_path(digest), "rb")  # pylint: disable=consider-using-with
        except OSError:
            raise NotFound(f"{self.name} has no blob {digest}", self.name)
        handle.seek(offset)
        return handle, 206 if offset else 200


def make_client(endpoint, username=None, password=None, validate_certs=True, ca_path=None,
                timeout=30):
    """A client for one endpoint: a dict {url, ca_file?} or a string URL / oci-layout:PATH."""
    if isinstance(endpoint, dict):
        url = endpoint.get("url")
        ca_path = endpoint.get("ca_file") or endpoint.get("ca_path") or ca_path
    else:
        url = endpoint
    if not isinstance(url, str) or not url:
        raise OCIError(f"registry endpoint {endpoint!r} has no url")
    if url.startswith("oci-layout:"):
        return LayoutClient(url[len("oci-layout:"):])
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise OCIError(f"registry endpoint '{url}' is not https://HOST[:PORT] or oci-layout:PATH")
    return RegistryClient(url, username, password, validate_certs, ca_path, timeout)


def parse_manifest(body, media_type, where):
    """Decode a manifest or index and check its media type."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise OCIError(f"{where}: the manifest is not JSON")
    media_type = media_type if media_type in MANIFEST_TYPES + INDEX_TYPES else \
        doc.get("mediaType") or media_type
    if media_type not in MANIFEST_TYPES + INDEX_TYPES:
        if doc.get("schemaVersion") == 2 and "layers" in doc and "config" in doc:
            media_type = OCI_MANIFEST  # an OCI manifest served without its mediaType
        else:
            raise OCIError(f"{where}: unsupported manifest media type '{media_type}'; expected "
                           f"one of {', '.join(MANIFEST_TYPES + INDEX_TYPES)}")
    return doc, media_type


def _stream(resp, out, hasher, progress=None):
    """Copy resp to out, hashing; the write and the hash of one chunk overlap the next read.

    Returns the bytes written. hashlib, file writes and socket reads all release the GIL, so
    on two cores this runs near the speed of the network instead of the sum of the three.
    """
    chunks = queue.Queue(maxsize=8)
    errors = []

    def sink():
        while True:
            chunk = chunks.get()
            if chunk is None:
                return
            if not errors:
                try:
                    out.write(chunk)
                    hasher.update(chunk)
                except OSError as exc:
                    errors.append(exc)

    writer = threading.Thread(target=sink, daemon=True)
    writer.start()
    count = 0
    try:
        while not errors:
            chunk = resp.read(CHUNK)
            if not chunk:
                break
            chunks.put(chunk)
            count += len(chunk)
            if progress:
                progress(len(chunk))
    finally:
        chunks.put(None)
        writer.join()
    if errors:
        raise errors[0]
    return count


def download_blob(client, repo, digest, dest, size=None, retries=2, progress=None):
    """Stream a blob to dest, checking sha256 while streaming; resume from dest.partial.

    Returns the number of bytes fetched over the wire. dest appears only when verified.
    """
    partial = dest + ".partial"
    hasher = hashlib.sha256()
    offset = 0
    if os.path.exists(partial):
        offset = os.path.getsize(partial)
        if size is not None and offset > size:
            os.unlink(partial)
            offset = 0
        else:
            sha256_file(partial, hasher)
    fetched = 0
    attempt, failed_at = 0, -1
    while True:
        if size is not None and offset == size:
            break
        start = offset
        try:
            resp, status = client.open_blob(repo, digest, offset)
            if status == 416:  # the partial file already holds everything
                break
            if status == 200 and offset:
                offset = start = 0  # the server ignored Range: start again
                hasher = hashlib.sha256()
            with open(partial, "ab" if offset else "wb") as out:
                offset = start + _stream(resp, out, hasher, progress)
            resp.close()
            if size is None or offset >= size:
                fetched += offset - start
                break
            raise BrokenTransfer(f"the connection closed after {offset} of {size} bytes")
        except OCIError:
            raise
        except (OSError, HTTPException, BrokenTransfer) as exc:
            if getattr(exc, "errno", None) == 28:  # ENOSPC: keep nothing half-written
                if os.path.exists(partial):
                    os.unlink(partial)
                raise OCIError(f"disk full while writing blob {digest} to {os.path.dirname(dest)}: "
                               f"free some space (model_info shows what the store holds)")
            # What reached the file before the break was hashed too: resume after it.
            offset = os.path.getsize(partial) if os.path.exists(partial) else 0
            fetched += max(0, offset - start)
            attempt = 1 if offset > failed_at else attempt + 1  # progress resets the count
            failed_at = offset
            if attempt > retries:
                raise Unreachable(f"{client.name}: blob {digest} broke off after {offset} bytes: "
                                  f"{exc}", client.name)
            time.sleep(min(0.5 * 2 ** (attempt - 1), 10))
    if "sha256:" + hasher.hexdigest() != digest:
        os.unlink(partial)
        raise DigestMismatch(f"{client.name}: blob {digest} of {repo} failed verification: its "
                             f"content hashes to sha256:{hasher.hexdigest()}; the registry's copy is "
                             f"corrupt or was altered. Nothing was activated.", client.name)
    if size is not None and offset != size:
        os.unlink(partial)
        raise DigestMismatch(f"{client.name}: blob {digest} is {offset} bytes, the manifest says "
                             f"{size}", client.name)
    os.replace(partial, dest)
    return fetched
