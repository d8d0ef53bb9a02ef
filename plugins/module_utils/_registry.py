# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the registry HTTP client (OCI distribution API, pull and push)
and its auth. Standard library and ansible.module_utils only: it runs on edge hosts.

The registry, a mirror, a token service and a storage redirect may all be hostile. The rules:

- Credentials (the endpoint's username/password, a basic header, a bearer token) go only to
  the registry's own scheme, host and port, and only over https, or over plain http when the
  registry is on loopback (a lab). A registry on plain http elsewhere is used anonymously.
- A token realm is contacted only if it is https, or on the registry's own scheme, host and
  port; anything else is refused with an AuthError naming the realm.
- Blob redirects (storage) are followed by hand, at most MAX_REDIRECTS hops, each one checked:
  only http and https targets, never from https down to http, and never with credentials.
- A manifest is read to at most MAX_MANIFEST_BYTES; one fetched by digest must hash to it.
- Error bodies and token answers are read to a small cap. Credentials are held in the client
  and never put into messages or return values.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import socket
import ssl
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin, urlsplit

from ansible.module_utils.urls import Request

from ansible_collections.edgeml.fleet.plugins.module_utils._digest import (
    MAX_MANIFEST_BYTES, BadDigest, digest_hex)
from ansible_collections.edgeml.fleet.plugins.module_utils._layout import (
    LayoutClient, check_manifest, read_capped)
from ansible_collections.edgeml.fleet.plugins.module_utils._oci import (
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, AuthError, NotFound, OCIError,
    Unreachable)

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
MAX_SMALL_BODY = 1 << 20  # token answers and error bodies
DEFAULT_PORTS = {"http": 80, "https": 443}
ENDPOINT_KEYS = ("url", "kind", "ca_file", "ca_path", "username", "password")


def _challenge(header):
    """Parse 'Bearer realm="…",service="…",scope="…"' -> ('bearer', {…})."""
    scheme, _sep, rest = (header or "").strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def origin(url):
    """(scheme, host, port) of a URL: what 'the same registry' means for credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def may_carry_credentials(url):
    """https, or plain http to a loopback address (a lab registry on the host itself)."""
    scheme, host, _port = origin(url)
    return scheme == "https" or scheme == "http" and is_loopback(host)


def shown(url):
    """A URL fit for a message: no user info, query or fragment (pre-signed storage URLs)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url[:80]


def _status(resp):
    return getattr(resp, "status", None) or resp.code


class RegistryClient:
    """One registry endpoint: https://host[:port]."""

    def __init__(self, url, username=None, password=None, validate_certs=True, ca_path=None,
                 timeout=30):
        self.url = url.rstrip("/")
        self.name = self.url
        self._creds = (username, password or "") if username else None
        self._tokens = {}  # scope -> bearer token
        self._basic = False
        # No redirects (each hop is checked by hand), no ~/.netrc, no transparent gunzip.
        self._http = Request(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout,
                             follow_redirects="none", http_agent="edgeml.fleet", use_netrc=False,
                             decompress=False)
        self.timeout = timeout

    # -- credentials -------------------------------------------------------------------------
    def _basic_header(self):
        raw = f"{self._creds[0]}:{self._creds[1]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def _auth_header(self, scope):
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self._creds:
            return self._basic_header()
        return {}

    def _check_credentials_allowed(self):
        if self._creds and not may_carry_credentials(self.url):
            raise AuthError(f"{self.name}: refusing to send credentials over plain http to a "
                            "registry that is not on loopback; use https (credentials go over "
                            "plain http only to a lab registry on 127.0.0.1 or ::1)", self.name)

    def _check_realm(self, realm):
        scheme, host, _port = origin(realm)
        if (scheme == "https" and host) or origin(realm) == origin(self.url):
            return
        raise AuthError(f"{self.name}: refusing the token realm {shown(realm)}: a token service "
                        "is contacted only over https, or on the registry's own scheme, host and "
                        "port", self.name)

    def _fetch_token(self, params, scope):
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.name} asked for a bearer token but named no realm", self.name)
        self._check_realm(realm)
        headers = {}
        if self._creds:
            self._check_credentials_allowed()
            headers = self._basic_header()
        query = {k: v for k, v in (("service", params.get("service")),
                                   ("scope", scope or params.get("scope"))) if v}
        try:
            resp = self._http.open("GET", realm + ("&" if "?" in realm else "?") + urlencode(query),
                                   headers=headers)
            body = json.loads(read_capped(resp, MAX_SMALL_BODY))
            token = body.get("token") or body.get("access_token")
        except HTTPError as exc:
            if exc.code in (401, 403):
                raise AuthError(f"{self.name}: the token service {shown(realm)} refused the "
                                f"credentials (HTTP {exc.code}); check username and password",
                                self.name, exc.code)
            raise Unreachable(f"{self.name}: the token service {shown(realm)} answered HTTP "
                              f"{exc.code}", self.name, exc.code)
        except (URLError, OSError, HTTPException, ValueError, RecursionError,
                AttributeError) as exc:
            raise Unreachable(f"{self.name}: no token from {shown(realm)}: {exc}", self.name)
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.name}: the token service {shown(realm)} returned no token",
                            self.name)
        self._tokens[scope] = token

    # -- HTTP --------------------------------------------------------------------------------
    def request(self, method, path, scope, headers=None, data=None, ok=(200,), what=None):
        """Send a request, answering one auth challenge; return the open response.

        Credentials go only to the registry's own origin (an upload Location elsewhere gets none).
        """
        url = path if path.startswith(("http://", "https://")) else self.url + path
        own = origin(url) == origin(self.url)
        what = what or f"{method} {path}"
        for attempt in (1, 2):
            all_headers = dict(headers or {})
            if own:
                all_headers.update(self._auth_header(scope))
            try:
                resp = self._http.open(method, url, data=data, headers=all_headers)
                if resp.status in ok:
                    return resp
                raise OCIError(f"{self.name}: {what}: unexpected HTTP {resp.status}", self.name,
                               resp.status)
            except HTTPError as exc:
                if exc.code == 401 and attempt == 1 and own:
                    scheme, params = _challenge(exc.headers.get("WWW-Authenticate"))
                    if scheme == "bearer":
                        self._fetch_token(params, scope)
                        continue
                    if scheme == "basic" and self._creds and not self._basic:
                        self._check_credentials_allowed()
                        self._basic = True
                        continue
                if exc.code in ok:
                    return exc
                raise self._http_error(exc, what)
            except (URLError, OSError, HTTPException) as exc:
                raise self._network_error(exc)
        raise AuthError(f"{self.name}: {what}: still unauthorized after authenticating", self.name, 401)

    def _network_error(self, exc):
        reason = exc.reason if isinstance(exc, URLError) else exc
        if isinstance(reason, ssl.SSLError):
            return Unreachable(f"{self.name}: TLS failed: {getattr(reason, 'reason', None) or reason}. "
                               "The registry's certificate does not verify; give the CA that signed "
                               "it with ca_path (or the endpoint's ca_file), or fix the certificate; "
                               "validate_certs=false is for labs only", self.name)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return Unreachable(f"{self.name} did not answer within {self.timeout} s", self.name)
        return Unreachable(f"{self.name} is unreachable: {reason}", self.name)

    def _http_error(self, exc, what):
        try:
            detail = json.loads(exc.read(MAX_SMALL_BODY) or b"{}").get("errors", [{}])[0].get("message", "")
            detail = str(detail)[:200]
        except (ValueError, RecursionError, AttributeError, LookupError, TypeError, OSError,
                HTTPException):  # the detail is a courtesy: any shape of body may come
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

    # -- pull --------------------------------------------------------------------------------
    def _read_small(self, resp):
        """A manifest-sized answer read whole: up to MAX_MANIFEST_BYTES + 1 bytes (more means
        too large, for the caller to refuse), the response closed either way."""
        try:
            return read_capped(resp, MAX_MANIFEST_BYTES)
        except (OSError, HTTPException) as exc:
            raise self._network_error(exc)
        finally:
            resp.close()

    def get_manifest(self, repo, reference):
        """-> (body bytes, media type, digest) of a manifest or index.

        At most MAX_MANIFEST_BYTES are read; a manifest asked for by digest must hash to it.
        """
        by_digest = ":" in reference  # tags have no colon
        what = f"manifest {repo}@{reference}" if by_digest else f"manifest {repo}:{reference}"
        if by_digest:
            _checked_digest(reference, f"{self.name}: {what}")
        accept = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull",
                            headers={"Accept": accept}, what=what)
        body = self._read_small(resp)
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        digest = check_manifest(f"{self.name}: {what}", body, reference if by_digest else None)
        return body, media_type, digest

    def head_manifest(self, repo, tag):
        """The digest the registry gives for repo:tag (one HEAD request; NotFound where the tag
        does not exist), or None where it gives none. Only a hint (is there news?): what is used
        is fetched by digest."""
        accept = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{tag}", f"repository:{repo}:pull",
                            headers={"Accept": accept}, what=f"manifest {repo}:{tag}")
        resp.close()
        digest = (resp.headers.get("Docker-Content-Digest") or "").strip()
        try:
            digest_hex(digest)
        except BadDigest:
            return None  # no usable digest: the caller fetches the manifest and sees
        return digest

    def get_referrers(self, repo, digest):
        """The referrers API's image index for digest (at most MAX_MANIFEST_BYTES); NotFound
        where the registry does not have the API (CNCF distribution 2.8 answers 404)."""
        what = f"referrers of {repo}@{digest}"
        _checked_digest(digest, f"{self.name}: {what}")
        resp = self.request("GET", f"/v2/{repo}/referrers/{digest}", f"repository:{repo}:pull",
                            headers={"Accept": OCI_INDEX}, what=what)
        body = self._read_small(resp)
        if len(body) > MAX_MANIFEST_BYTES:
            raise OCIError(f"{self.name}: {what} is larger than {MAX_MANIFEST_BYTES} bytes; "
                           "refusing it", self.name)
        return body

    def open_blob(self, repo, digest, offset=0):
        """An open response for a blob from offset (status 206), whole (200) or done (416).

        Storage redirects are followed here, hop by hop, with no registry credentials.
        """
        _checked_digest(digest, f"{self.name}: blob of {repo}")
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"blob {digest} of {repo}"
        url = f"{self.url}/v2/{repo}/blobs/{digest}"
        resp = self.request("GET", url, f"repository:{repo}:pull", headers=headers,
                            ok=(200, 206, 416) + REDIRECTS, what=what)
        hops = 0
        while _status(resp) in REDIRECTS:
            hops += 1
            resp.close()
            if hops > MAX_REDIRECTS:
                raise OCIError(f"{self.name}: {what}: more than {MAX_REDIRECTS} redirects; "
                               "refusing to follow more", self.name)
            url = self._redirect_target(url, resp.headers.get("Location"), what)
            try:
                resp = self._http.open("GET", url, headers=headers)
            except HTTPError as exc:
                if exc.code not in REDIRECTS + (416,):
                    raise self._http_error(exc, f"{what} (redirected to {shown(url)})")
                resp = exc
            except (URLError, OSError, HTTPException) as exc:
                raise self._network_error(exc)
        return resp, _status(resp)

    def _redirect_target(self, current, location, what):
        if not location:
            raise OCIError(f"{self.name}: {what}: a redirect without a Location", self.name)
        target = urljoin(current, location.strip())
        scheme, host, _port = origin(target)
        if scheme not in ("http", "https") or not host:
            raise OCIError(f"{self.name}: {what}: refusing the redirect to {shown(target)}: only "
                           "http and https storage redirects are followed", self.name)
        if origin(current)[0] == "https" and scheme == "http":
            raise OCIError(f"{self.name}: {what}: refusing the redirect from https to plain http "
                           f"({shown(target)})", self.name)
        return target

    # -- push --------------------------------------------------------------------------------
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


def _checked_digest(digest, where):
    try:
        return digest_hex(digest)
    except BadDigest as exc:
        raise OCIError(f"{where}: {exc.msg}")


def _describe(endpoint):
    """An endpoint for a message: a dict by its url and keys only (it may hold a password)."""
    if isinstance(endpoint, dict):
        url = endpoint.get("url")
        return f"{shown(url) if isinstance(url, str) else url!r} (keys: " \
               f"{', '.join(sorted(map(str, endpoint)))})"
    return shown(endpoint) if isinstance(endpoint, str) else repr(endpoint)[:80]


def make_client(endpoint, username=None, password=None, validate_certs=True, ca_path=None,
                timeout=30):
    """A client for one endpoint: a string URL or oci-layout:PATH, or a dict {url, ca_file?,
    username?, password?}. A dict that names a username or password uses its own, for that
    endpoint only; the given username/password apply to endpoints that name none."""
    if isinstance(endpoint, dict):
        unknown = sorted(set(map(str, endpoint)) - set(ENDPOINT_KEYS))
        if unknown:
            raise OCIError(f"registry endpoint {_describe(endpoint)}: unknown key(s) "
                           f"{', '.join(unknown)}; expected {', '.join(ENDPOINT_KEYS)}")
        url = endpoint.get("url")
        ca_path = endpoint.get("ca_file") or endpoint.get("ca_path") or ca_path
        if "username" in endpoint or "password" in endpoint:
            username, password = endpoint.get("username"), endpoint.get("password")
        if not all(v is None or isinstance(v, str) for v in (username, password)):
            raise OCIError(f"registry endpoint {_describe(endpoint)}: username and password must "
                           "be strings")
    else:
        url = endpoint
    if not isinstance(url, str) or not url:
        raise OCIError(f"registry endpoint {_describe(endpoint)} has no url")
    if url.startswith("oci-layout:"):
        return LayoutClient(url[len("oci-layout:"):])
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise OCIError(f"registry endpoint '{shown(url)}' is not https://HOST[:PORT] or "
                       "oci-layout:PATH")
    if "@" in parts.netloc:
        raise OCIError(f"registry endpoint '{shown(url)}' has credentials in its URL; give them "
                       "as username and password instead")
    return RegistryClient(url, username, password, validate_certs, ca_path, timeout)
