"""Pure logic of the OCI client: references, challenges, platform choice, manifests, and the
client's rules for hostile peers (credentials, realms, redirects, size caps)."""

import hashlib
import io
import json
import os
import re
import urllib.error

import pytest
from ansible.module_utils import basic

from ansible_collections.edgeml.fleet.plugins.module_utils import (
    _common, _digest, _layout, _oci, _registry, _transfer)
from ansible_collections.edgeml.fleet.plugins.module_utils._digest import MAX_MANIFEST_BYTES

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref,expected", [
    ("models/fraud:1.0", ("models/fraud", "1.0", None)),
    ("models/fraud", ("models/fraud", "latest", None)),
    (f"models/fraud@{DIGEST}", ("models/fraud", None, DIGEST)),
    (f"models/fraud:1.0@{DIGEST}", ("models/fraud", "1.0", DIGEST)),
    ("a/b/c-d_e.f:v1.2-rc.3", ("a/b/c-d_e.f", "v1.2-rc.3", None)),
])
def test_parse_ref(ref, expected):
    assert _oci.parse_ref(ref) == expected


@pytest.mark.parametrize("ref,fragment", [
    ("", "is empty"),
    ("Models/Fraud:1", "not a repository name"),
    ("models/fraud@sha256:abc", "not a sha256 digest"),
    ("models/fraud:bad tag", "not a valid tag"),
    ("registry.example.com:5000/models/fraud:1", "not a repository name"),
    ("models//fraud:1", "not a repository name"),
])
def test_parse_ref_rejects(ref, fragment):
    with pytest.raises(_oci.OCIError, match=fragment):
        _oci.parse_ref(ref)


def test_challenge_parsing():
    scheme, params = _registry._challenge(  # pylint: disable=protected-access
        'Bearer realm="https://auth.example.com/token",service="registry",'
        'scope="repository:models/fraud:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example.com/token", "service": "registry",
                      "scope": "repository:models/fraud:pull"}
    assert _registry._challenge('Basic realm="x"')[0] == "basic"  # pylint: disable=protected-access


INDEX = {"manifests": [
    {"digest": "sha256:1", "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:2", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"digest": "sha256:3", "platform": {"os": "linux", "architecture": "arm64", "variant": "v7"}},
    {"digest": "sha256:4", "platform": {"os": "windows", "architecture": "amd64"}},
]}


@pytest.mark.parametrize("machine,digest", [("x86_64", "sha256:1"), ("aarch64", "sha256:2"),
                                            ("arm64", "sha256:2"), ("AMD64", "sha256:1")])
def test_choose_platform(machine, digest):
    assert _oci.choose_platform(INDEX, "x", _oci.host_platform(machine))["digest"] == digest


def test_choose_platform_none_fits():
    with pytest.raises(_oci.OCIError, match="no image for linux/riscv64; it has: linux/amd64"):
        _oci.choose_platform(INDEX, "reg models/x", _oci.host_platform("riscv64"))


def test_single_platformless_entry_is_an_artifact_index():
    assert _oci.choose_platform({"manifests": [{"digest": "sha256:9"}]}, "x")["digest"] == "sha256:9"


@pytest.mark.parametrize("body,media_type,fragment", [
    (b"not json", "", "not JSON"),
    (b'{"schemaVersion": 1, "fsLayers": []}', "application/vnd.docker.distribution.manifest.v1+json",
     "unsupported manifest media type"),
    (b'{"mediaType": "application/vnd.example.thing"}', "", "unsupported manifest media type"),
])
def test_parse_manifest_rejects(body, media_type, fragment):
    with pytest.raises(_oci.OCIError, match=fragment):
        _oci.parse_manifest(body, media_type, "reg repo@sha256:x")


def test_parse_manifest_infers_untyped_oci_manifest():
    config = '{"digest": "sha256:' + "0" * 64 + '", "size": 2}'
    doc, media_type = _oci.parse_manifest(
        ('{"schemaVersion": 2, "config": ' + config + ', "layers": []}').encode(),
        "application/octet-stream", "x")
    assert media_type == _oci.OCI_MANIFEST and doc["layers"] == []


@pytest.mark.parametrize("endpoint,kind", [
    ("https://r.example.com", _registry.RegistryClient),
    ({"url": "https://r.example.com:5000", "ca_file": "/etc/ca.pem"}, _registry.RegistryClient),
    ("oci-layout:/media/bundle/images", _layout.LayoutClient),
])
def test_make_client(endpoint, kind):
    assert isinstance(_registry.make_client(endpoint), kind)


@pytest.mark.parametrize("endpoint", ["ftp://x", "registry.example.com", {"ca_file": "/x"}, ""])
def test_make_client_rejects(endpoint):
    with pytest.raises(_oci.OCIError):
        _registry.make_client(endpoint)


@pytest.mark.parametrize("code, body, mirror_hint", [
    (503, b"", True),
    (500, b'{"errors": [{"message": "unknown error"}]}', True),
    (500, b'{"errors": [{"message": "disk full"}]}', False),
    (429, b"", False),
])
def test_server_errors_are_retryable_and_name_a_cold_mirror(code, body, mirror_hint):
    client = _registry.RegistryClient("https://gw-m:5000")
    exc = urllib.error.HTTPError("https://gw-m:5000/v2/", code, "error", {}, io.BytesIO(body))
    error = client._http_error(exc, "manifest m:1")  # pylint: disable=protected-access
    assert isinstance(error, _oci.Unreachable) and f"HTTP {code}" in error.msg
    assert ("does not have this content cached" in error.msg) is mirror_hint


# -- the registry client's rules for hostile peers (end to end: test_registry_hostile.py) ------
# pylint: disable=protected-access
@pytest.mark.parametrize("url,allowed", [
    ("https://r.example.com", True), ("http://127.0.0.1:5000", True), ("http://[::1]:5000", True),
    ("http://localhost:5000", True), ("http://r.example.com:5000", False),
    ("http://10.0.0.1", False), ("ftp://127.0.0.1", False), ("file:///etc/passwd", False),
])
def test_credentials_go_over_https_or_loopback_http_only(url, allowed):
    assert _registry.may_carry_credentials(url) is allowed


@pytest.mark.parametrize("registry,realm,allowed", [
    ("https://r.example.com", "https://auth.example.com/token", True),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000/token", True),
    ("https://r.example.com", "http://r.example.com/token", False),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token", False),
    ("http://127.0.0.1:5000", "http://127.0.0.2:5000/token", False),
    ("https://r.example.com", "file:///etc/passwd", False),
    ("https://r.example.com", "https:///no-host", False),
])
def test_token_realm_rule(registry, realm, allowed):
    client = _registry.RegistryClient(registry, "u", "secret")
    if allowed:
        client._check_realm(realm)
    else:
        with pytest.raises(_oci.AuthError, match="refusing the token realm") as info:
            client._check_realm(realm)
        assert "secret" not in info.value.msg


class FakeHTTP:
    """Stands in for the client's Request: answers 401 with a challenge, records headers."""

    def __init__(self, challenge):
        self.challenge, self.seen = challenge, []

    def open(self, method, url, data=None, headers=None):
        del data
        self.seen.append((method, url, dict(headers or {})))
        raise urllib.error.HTTPError(url, 401, "unauthorized",
                                     {"WWW-Authenticate": self.challenge}, io.BytesIO(b""))


@pytest.mark.parametrize("challenge", ['Basic realm="r"',
                                       'Bearer realm="https://auth.example.com/token"'])
def test_no_credentials_to_a_plain_http_registry_elsewhere(challenge):
    client = _registry.RegistryClient("http://r.example.com:5000", "u", "secret")
    client._http = FakeHTTP(challenge)
    with pytest.raises(_oci.AuthError, match="refusing to send credentials over plain http"):
        client.get_manifest("models/m", "1")
    assert [h for _m, _u, h in client._http.seen if "Authorization" in h] == []
    assert len(client._http.seen) == 1


@pytest.mark.parametrize("location,fragment", [
    ("file:///etc/passwd", "refusing the redirect to file:///etc/passwd"),
    ("ftp://storage.example.com/x", "only http and https"),
    ("http://storage.example.com/x?sig=1",
     "from https to plain http (http://storage.example.com/x)"),
    ("", "a redirect without a Location"),
])
def test_redirect_targets_are_checked(location, fragment):
    client = _registry.RegistryClient("https://r.example.com")
    with pytest.raises(_oci.OCIError, match=re.escape(fragment)):
        client._redirect_target("https://r.example.com/v2/m/blobs/x", location, "blob")


def test_redirect_targets_resolve_relative_locations():
    client = _registry.RegistryClient("http://127.0.0.1:5000")
    assert client._redirect_target("http://127.0.0.1:5000/v2/m/blobs/x", "/storage/y",
                                   "blob") == "http://127.0.0.1:5000/storage/y"


def test_endpoint_dicts_carry_their_own_credentials():
    own = _registry.make_client({"url": "https://mirror:5000", "username": "m", "password": "mp"},
                                "module", "modp")
    inherited = _registry.make_client({"url": "https://core:5000", "kind": "core"}, "module",
                                      "modp")
    anonymous = _registry.make_client({"url": "https://open:5000", "username": None}, "module",
                                      "modp")
    assert own._creds == ("m", "mp") and inherited._creds == ("module", "modp")
    assert anonymous._creds is None


@pytest.mark.parametrize("endpoint,fragment", [
    ({"url": "https://r:5000", "password": "hunter2", "pasword": "x"}, "unknown key(s) pasword"),
    ({"password": "hunter2"}, "has no url"),
    ({"url": "https://r:5000", "password": 12345678}, "must be strings"),
    ("https://u:hunter2@r:5000", "has credentials in its URL"),
])
def test_endpoint_errors_never_show_a_password(endpoint, fragment):
    with pytest.raises(_oci.OCIError, match=re.escape(fragment)) as info:
        _registry.make_client(endpoint)
    assert "hunter2" not in info.value.msg and "12345678" not in info.value.msg


def test_endpoint_passwords_are_masked_from_the_first_log_line(monkeypatch):
    args = {"registries": [{"url": "https://m:5000", "username": "m", "password": "mirror-pw"},
                           "https://core:5000"], "password": "module-pw"}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    logged = []
    monkeypatch.setattr(_common.RegistryModule, "log",
                        lambda self, msg, log_args=None: logged.append(msg))
    module = _common.RegistryModule(argument_spec={})
    assert {"mirror-pw", "module-pw"} <= module.no_log_values
    assert logged and not any("mirror-pw" in line or "module-pw" in line for line in logged)
    assert "mirror-pw" not in repr(basic.remove_values({"invocation": module.params},
                                                       module.no_log_values))


class Endless:
    """A response that never ends; counts what was read."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, amount):
        self.read_bytes += amount
        return b"\0" * amount

    def close(self):
        pass


class EndlessClient:
    name = "https://hostile"

    def __init__(self):
        self.responses = []

    def open_blob(self, repo, digest, offset=0):
        del repo, digest
        self.responses.append(Endless())
        return self.responses[-1], 206 if offset else 200


@pytest.mark.parametrize("size,max_bytes,partial",
                         [(1024, None, 0), (None, 4096, 0), (1024, None, 1000)])
def test_download_reads_at_most_one_byte_past_the_limit(tmp_path, size, max_bytes, partial):
    digest = "sha256:" + "ab" * 32
    dest = tmp_path / digest[7:]
    if partial:
        (tmp_path / f"{digest[7:]}.partial").write_bytes(b"\0" * partial)
    client = EndlessClient()
    kwargs = {"max_bytes": max_bytes} if max_bytes else {}
    with pytest.raises(_oci.DigestMismatch, match="is longer than") as info:
        _transfer.download_blob(client, "models/m", digest, str(dest), size, **kwargs)
    limit = size if size is not None else max_bytes
    assert sum(r.read_bytes for r in client.responses) == limit + 1 - partial
    assert f"https://hostile: blob {digest} of models/m" in info.value.msg
    assert str(limit) in info.value.msg
    assert not list(tmp_path.iterdir())  # the partial file is gone


@pytest.mark.parametrize("digest,dest", [("sha256:../../x", "x"),
                                         ("sha256:" + "ab" * 32, "elsewhere")])
def test_download_target_must_be_named_by_a_valid_digest(tmp_path, digest, dest):
    with pytest.raises(_digest.BadDigest):
        _transfer.download_blob(EndlessClient(), "models/m", digest, str(tmp_path / dest), 10)
    assert not list(tmp_path.iterdir())


def _layout_with(tmp_path, body):
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "index.json").write_text(json.dumps({"manifests": [
        {"digest": digest, "annotations": {_oci.REF_NAME: "models/m:1"}},
        {"digest": "sha256:../../../etc/passwd",
         "annotations": {_oci.REF_NAME: "models/m:evil"}}]}))
    (tmp_path / "blobs" / "sha256" / digest[7:]).write_bytes(body)
    return _layout.LayoutClient(str(tmp_path)), tmp_path / "blobs" / "sha256" / digest[7:], digest


def test_layout_refuses_a_huge_manifest(tmp_path):
    client, path, _unused = _layout_with(tmp_path, b"{}")
    with open(path, "wb") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)  # sparse
    with pytest.raises(_oci.OCIError,
                       match=f"manifest models/m:1 is larger than {MAX_MANIFEST_BYTES}"):
        client.get_manifest("models/m", "1")


def test_layout_manifest_must_hash_to_its_name(tmp_path):
    client, path, digest = _layout_with(tmp_path, b'{"schemaVersion": 2}')
    path.write_bytes(b'{"schemaVersion": 2, "swapped": true}')
    with pytest.raises(_oci.DigestMismatch, match=f"manifest models/m@{digest} hashes to"):
        client.get_manifest("models/m", digest)
    with pytest.raises(_oci.OCIError, match="is not a sha256 digest"):
        client.get_manifest("models/m", "evil")


def test_layout_refuses_a_fifo_without_blocking(tmp_path):
    client, path, digest = _layout_with(tmp_path, b"{}")
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(_oci.OCIError, match="is not a regular file"):
        client.get_manifest("models/m", digest)
    with pytest.raises(_oci.OCIError, match="is not a regular file"):
        client.open_blob("models/m", digest)


def test_layout_never_reads_through_a_symlink(tmp_path):
    """A layout from a stranger's stick whose blob is a link to a root-only file: root read it
    and printed its hash ('its content hashes to sha256:…')."""
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret\n")
    shown = hashlib.sha256(secret.read_bytes()).hexdigest()
    client, path, digest = _layout_with(tmp_path / "layout", b"{}")
    path.unlink()
    os.symlink(secret, path)
    for call in (lambda: client.get_manifest("models/m", digest),
                 lambda: client.open_blob("models/m", digest)):
        with pytest.raises(_oci.OCIError, match="is a symlink; refusing it") as caught:
            call()
        assert shown not in caught.value.msg
