"""Pure logic of the OCI client: references, challenges, platform choice, manifests."""

import pytest

from ansible_collections.edgeml.fleet.plugins.module_utils import _layout, _oci, _registry

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
    import io  # pylint: disable=import-outside-toplevel
    import urllib.error  # pylint: disable=import-outside-toplevel
    client = _registry.RegistryClient("https://gw-m:5000")
    exc = urllib.error.HTTPError("https://gw-m:5000/v2/", code, "error", {}, io.BytesIO(body))
    error = client._http_error(exc, "manifest m:1")  # pylint: disable=protected-access
    assert isinstance(error, _oci.Unreachable) and f"HTTP {code}" in error.msg
    assert ("does not have this content cached" in error.msg) is mirror_hint
