"""A synthetic sealed bundle (an OCI layout of model blobs and a wheel archive, with its
manifest.json and SHA256SUMS), as bundle_seal writes one, for the unit tests and the benchmark;
and bootstrap.sh as build_bundle renders it, with the files it needs to get past verification."""

import hashlib
import json
import subprocess
from pathlib import Path

from ansible_collections.edgeml.fleet.plugins.module_utils import _bundle

ROOT = Path(__file__).resolve().parents[2]


def run_command(argv, data=None, binary_data=False):  # the shape of AnsibleModule.run_command
    del binary_data
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def make_bundle(root, layers, wheel, ref="models/m:1", files=None, manifest=None):
    """Seal a bundle at root holding one image of the given layer bytes; returns its layers.

    files: more files {relative path: bytes}; manifest: more keys for manifest.json.
    """
    layout = root / "images"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descriptors = [dict(_blob(layout, data), mediaType="application/octet-stream") for data in layers]
    config = _blob(layout, b"{}")
    doc = json.dumps({"schemaVersion": 2, "config": config, "layers": descriptors}).encode()
    entry = dict(_blob(layout, doc), annotations={"org.opencontainers.image.ref.name": ref})
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (root / "wheelhouse").mkdir()
    (root / "wheelhouse" / "runtime.tar").write_bytes(wheel)
    for rel, data in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "manifest.json").write_text(json.dumps(dict(manifest or {}, format=_bundle.FORMAT,
                                                        omitted=[])))
    _bundle.write_sums(root, _bundle.hash_files(root))
    return descriptors


def bootstrap_script():
    """roles/offline_bundle/templates/bootstrap.sh.j2 rendered as the role renders it."""
    from jinja2 import Environment  # pylint: disable=import-outside-toplevel
    template = (ROOT / "roles" / "offline_bundle" / "templates" / "bootstrap.sh.j2").read_text()
    return Environment(keep_trailing_newline=True).from_string(template).render({
        "__offline_bundle_bootstrap_venv": "/opt/edgeml/bootstrap",
        "__offline_bundle_signing_namespace": _bundle.NAMESPACE, "ansible_version": {"full": "2.19.0"},
        "__offline_bundle_collection_file": "edgeml-fleet-1.0.0.tar.gz"})


def make_host_bundle(root, hosts=("edge-c1",), sites=("site-c",)):
    """A bundle for hosts with what bootstrap.sh looks at: bootstrap.sh itself, Ansible's wheels
    and requirements.txt, the inventory, an OS package (unsigned: sign it with sign_bundle)."""
    wheel = b"PK not really a wheel"
    files = {
        "bootstrap.sh": bootstrap_script().encode(),
        "ansible/x86_64-cp311/ansible_core-2.19.0-py3-none-any.whl": wheel,
        "ansible/x86_64-cp311/requirements.txt": (
            f"ansible_core==2.19.0 --hash=sha256:{hashlib.sha256(wheel).hexdigest()}\n").encode(),
        "inventory/site.yml": b"all: {children: {sites: {children: {site_site_c: {hosts: {edge-c1: {}}}}}}}\n",
        "packages/python3-venv_3.11_all.deb": b"!<arch>\n",
        "collections/edgeml-fleet-1.0.0.tar.gz": b"\x1f\x8b not really a tarball",
    }
    make_bundle(root, [b"onnx bytes" * 100], b"runtime wheels", files=files,
                manifest={"hosts": list(hosts), "sites": list(sites), "mirrors": []})
    (root / "bootstrap.sh").chmod(0o755)


def sign_bundle(root, key, name=_bundle.SUMS):
    _bundle.sign(run_command, root, key, name)
