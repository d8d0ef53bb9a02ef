# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the registry HTTP client (OCI distribution API, pull and push)
and its auth. Standard library and ansible.module_utils only: it runs on edge hosts.
Credentials are held in the client and never put into messages or return values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import ssl
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin, urlsplit

from ansible.module_utils.urls import Request

from ansible_collections.edgeml.fleet.plugins.module_utils._layout import LayoutClient
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, AuthError, NotFound, OCIError,
    Unreachable)


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
