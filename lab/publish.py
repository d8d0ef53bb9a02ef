"""Publish the sample models to the core registry in both shapes (docs/design.md).

With the collection's own model_publish (lab/publish_models.yml), as a pipeline would:
``models/<name>:<version>`` (OCI artifacts) and ``modelcars/<name>:<version>`` (modelcar image
indexes for amd64 and arm64). And with the peer tools, to prove the collection reads what they
make: ``peers/oras/<name>`` pushed with ``oras`` and ``peers/docker/<name>`` built and pushed
with Docker. A peer tag already in the registry is left alone: tags the tests rely on don't move.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import oras.client
import requests

from .topology import CONTROLLER_REGISTRY, REGISTRY_USER, ROOT, STATE
from .models import FAULTY

MEDIA_TYPES = {
    "model.onnx": "application/vnd.edgeml.model.onnx",
    "edgeml-model.json": "application/vnd.edgeml.model.metadata.v1+json",
}
CONFIG_MEDIA_TYPE = "application/vnd.edgeml.model.config.v1+json"


def artifact_ref(name, version):
    return f"{CONTROLLER_REGISTRY}/peers/oras/{name}:{version}"


def modelcar_ref(name, version):
    return f"{CONTROLLER_REGISTRY}/peers/docker/{name}:{version}"


def publish_with_collection(samples):
    """Run lab/publish_models.yml (model_publish) for every sample model."""
    samples_var = [{"name": n, "version": v, "dir": str(d)} for (n, v), d in sorted(samples.items())]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), EDGEML_LAB_STATE=str(STATE))
    extra = json.dumps({"lab_samples": samples_var, "lab_registry": f"https://{CONTROLLER_REGISTRY}"})
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"),
                           str(ROOT / "lab" / "publish_models.yml"), "-e", extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"lab: publishing with model_publish failed:\n{proc.stdout[-3000:]}")
    return [f"{CONTROLLER_REGISTRY}/{kind}/{n}:{v}" for (n, v) in sorted(samples)
            for kind in ("models", "modelcars")]


def tag_exists(ref, password, ca_cert):
    host, _sep, rest = ref.partition("/")
    repo, _sep, tag = rest.rpartition(":")
    resp = requests.head(
        f"https://{host}/v2/{repo}/manifests/{tag}", auth=(REGISTRY_USER, password),
        verify=str(ca_cert), timeout=10,
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                           "application/vnd.docker.distribution.manifest.v2+json"})
    return resp.status_code == 200


def push_artifact(directory: Path, ref, password, ca_cert):
    client = oras.client.OrasClient(hostname=CONTROLLER_REGISTRY, tls_verify=str(ca_cert),
                                    auth_backend="basic")
    client.login(username=REGISTRY_USER, password=password, hostname=CONTROLLER_REGISTRY)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text("{}")
        os.chdir(directory)  # oras names each layer by the path it was given
        try:
            client.push(target=ref, files=[f"{f}:{t}" for f, t in MEDIA_TYPES.items()],
                        manifest_config=f"{config}:{CONFIG_MEDIA_TYPE}", quiet=True)
        finally:
            os.chdir(cwd)


def push_modelcar(docker_client, directory: Path, ref, password):
    repo, _sep, tag = ref.rpartition(":")
    with tempfile.TemporaryDirectory() as tmp:
        for name in MEDIA_TYPES:
            shutil.copy(directory / name, tmp)
        Path(tmp, "Dockerfile").write_text(
            "FROM scratch\nCOPY model.onnx edgeml-model.json /models/\n")
        docker_client.images.build(path=tmp, tag=ref, rm=True)
    for line in docker_client.images.push(repo, tag=tag, stream=True, decode=True,
                                          auth_config={"username": REGISTRY_USER,
                                                       "password": password}):
        if "error" in line:
            raise SystemExit(f"lab: pushing {ref} failed: {line['error']}")


def publish_samples(docker_client, samples, password, ca_cert):
    # Docker verifies the registry with the lab CA (per-registry certs.d, read on each push).
    certs_d = Path("/etc/docker/certs.d") / CONTROLLER_REGISTRY
    certs_d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca_cert, certs_d / "ca.crt")
    published = publish_with_collection(samples)
    for (name, version), directory in sorted(samples.items()):
        if (name, version) in FAULTY:
            continue  # the peers' copies are for benchmarks: good models only
        for ref, push in ((artifact_ref(name, version), push_artifact),
                          (modelcar_ref(name, version), None)):
            if not tag_exists(ref, password, ca_cert):
                print(f"lab: publishing {ref}", flush=True)
                if push:
                    push(directory, ref, password, ca_cert)
                else:
                    push_modelcar(docker_client, directory, ref, password)
            published.append(ref)
    return published
