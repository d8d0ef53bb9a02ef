"""The one digest rule, and every descriptor position of a manifest or index."""

import json

import pytest

from ansible_collections.edgeml.fleet.plugins.module_utils import _digest, _oci

GOOD = "sha256:" + "ab" * 32
BAD = [
    "sha256:../../../etc/passwd",
    "sha256:" + "AB" * 32,  # upper-case hex
    "sha512:" + "ab" * 64,
    "md5:" + "ab" * 16,
    "sha256:" + "ab" * 31,  # short
    "sha256:" + "ab" * 32 + "\n",
    "sha256:" + "ab" * 32 + "/x",
    "ab" * 32,
    "",
    None,
    42,
    ["sha256:" + "ab" * 32],
]


@pytest.mark.parametrize("value", BAD)
def test_bad_digests_are_refused_and_never_become_paths(value):
    with pytest.raises(_digest.BadDigest, match="not a sha256 digest"):
        _digest.check_digest(value, "layers[0]")
    with pytest.raises(_digest.BadDigest):
        _digest.digest_hex(value)


def test_good_digest():
    assert _digest.check_digest(GOOD) == GOOD
    assert _digest.digest_hex(GOOD) == "ab" * 32


def manifest(**overrides):
    doc = {"schemaVersion": 2, "mediaType": _oci.OCI_MANIFEST,
           "config": {"mediaType": "x", "digest": GOOD, "size": 2},
           "layers": [{"mediaType": "x", "digest": GOOD, "size": 3}]}
    doc.update(overrides)
    return json.dumps(doc).encode()


def index(**overrides):
    doc = {"schemaVersion": 2, "mediaType": _oci.OCI_INDEX,
           "manifests": [{"mediaType": _oci.OCI_MANIFEST, "digest": GOOD, "size": 9}]}
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("bad", BAD[:8])
@pytest.mark.parametrize("body", [
    lambda d: manifest(config={"mediaType": "x", "digest": d, "size": 2}),
    lambda d: manifest(layers=[{"digest": GOOD, "size": 1}, {"digest": d, "size": 1}]),
    lambda d: manifest(subject={"mediaType": "x", "digest": d, "size": 1}),
    lambda d: index(manifests=[{"mediaType": _oci.OCI_MANIFEST, "digest": d, "size": 1}]),
    lambda d: index(subject={"mediaType": "x", "digest": d, "size": 1}),
], ids=["config", "layer", "subject", "index-entry", "index-subject"])
def test_every_descriptor_position_is_checked(body, bad):
    with pytest.raises(_oci.OCIError, match="not a sha256 digest"):
        _oci.parse_manifest(body(bad), "", "reg repo@x")


@pytest.mark.parametrize("size", [-1, True, "12", 1.5, 1 << 60])
def test_descriptor_sizes_must_be_byte_counts(size):
    with pytest.raises(_oci.OCIError, match="is not a byte count"):
        _oci.parse_manifest(manifest(layers=[{"digest": GOOD, "size": size}]), "", "where")


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"12"])
def test_a_manifest_must_be_an_object(body):
    with pytest.raises(_oci.OCIError, match="not a JSON object"):
        _oci.parse_manifest(body, _oci.OCI_MANIFEST, "where")


def test_a_manifest_over_the_cap_is_refused_before_parsing():
    body = manifest(annotations={"pad": "x" * _digest.MAX_MANIFEST_BYTES})
    with pytest.raises(_oci.OCIError, match="larger than"):
        _oci.parse_manifest(body, _oci.OCI_MANIFEST, "where")


def test_file_digest(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert _digest.file_digest(str(path)) == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


@pytest.mark.parametrize("extra,fragment", [
    ({"size": None}, "is not a byte count"),
    ({"size": "absent"}, "is not a byte count"),
    ({"annotations": ["x"]}, "annotations are not a map of strings"),
    ({"annotations": {"org.opencontainers.image.title": 5}}, "annotations are not a map"),
    ({"platform": "linux"}, "platform is not an object"),
    ({"platform": {"os": "linux", "architecture": 5}}, "platform is not an object"),
])
def test_descriptor_shapes_that_crashed_later_are_refused(extra, fragment):
    """Each of these passed the check and then raised a TypeError, KeyError or AttributeError
    (a raw traceback) where model_sync summed sizes, read titles or chose a platform."""
    layer = {"mediaType": "x", "digest": GOOD, "size": 3}
    layer.update(extra)
    if layer["size"] == "absent":
        del layer["size"]
    with pytest.raises(_oci.OCIError, match=fragment):
        _oci.parse_manifest(manifest(layers=[layer]), "", "where")


def test_an_image_manifest_needs_a_config():
    body = json.dumps({"schemaVersion": 2, "mediaType": _oci.OCI_MANIFEST, "layers": []}).encode()
    with pytest.raises(_oci.OCIError, match="has no config descriptor"):
        _oci.parse_manifest(body, "", "where")


def test_json_nested_thousands_deep_is_not_json():
    with pytest.raises(_oci.OCIError, match="is not JSON"):
        _oci.parse_manifest(b"[" * 100000, _oci.OCI_MANIFEST, "where")
