"""A synthetic sealed bundle (an OCI layout of model blobs and a wheel archive, with its
manifest.json and SHA256SUMS), as bundle_seal writes one, for the unit tests and the benchmark."""

import hashlib
import json
import subprocess

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle


def run_command(argv, data=None, binary_data=False):  # the shape of AnsibleModule.run_command
    del binary_data
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def make_bundle(root, layers, wheel, ref="models/m:1"):
    """Seal a bundle at root holding one image of the given layer bytes; returns its layers."""
    layout = root / "images"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descriptors = [dict(_blob(layout, data), mediaType="application/octet-stream") for data in layers]
    config = _blob(layout, b"{}")
    manifest = json.dumps({"schemaVersion": 2, "config": config, "layers": descriptors}).encode()
    entry = dict(_blob(layout, manifest), annotations={"org.opencontainers.image.ref.name": ref})
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (root / "wheelhouse").mkdir()
    (root / "wheelhouse" / "runtime.tar").write_bytes(wheel)
    (root / "manifest.json").write_text(json.dumps({"format": _bundle.FORMAT, "omitted": []}))
    _bundle.write_sums(root, _bundle.hash_files(root))
    return descriptors
