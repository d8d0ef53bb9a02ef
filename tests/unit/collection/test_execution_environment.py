"""The execution environment definitions: what ansible-builder reads from the collection
(meta/execution-environment.yml, introspected as an image build would) and the v3 definition
for Automation Platform users (ansible-builder turns it into a build context)."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

BUILDER = str(Path(sys.executable).with_name("ansible-builder"))


def _requirements(path):
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def test_the_collection_tells_ansible_builder_what_it_needs(repo_root):
    """ansible-builder introspect --sanitize, on the collection as an image build installs it
    (.collections/ansible_collections/edgeml/fleet): every Python and system requirement of
    meta/ comes out attributed to edgeml.fleet."""
    out = subprocess.run([BUILDER, "introspect", "--sanitize", str(repo_root / ".collections")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    found = yaml.safe_load(out)
    python = [entry.split("#")[0].strip() for entry in found["python"]]
    system = [entry.split("#")[0].strip() for entry in found["system"]]
    assert python == _requirements(repo_root / "meta" / "ee-requirements.txt")
    assert system == _requirements(repo_root / "meta" / "ee-bindep.txt")
    assert all(entry.endswith("# from collection edgeml.fleet") for entry in found["python"] + found["system"])
    assert "openssh-client [platform:dpkg]" in system  # ssh-keygen: bundles are signed with it


def test_no_ansible_core_and_no_hard_pins(repo_root):
    """An execution environment brings its own ansible-core; exact pins would fight the image's
    other collections (the convention community.docker and kubernetes.core follow)."""
    python = _requirements(repo_root / "meta" / "ee-requirements.txt")
    assert python and not [r for r in python if re.match(r"ansible(-core|-base)?\b", r)]
    assert not [r for r in python if "==" in r or "===" in r]
    meta = yaml.safe_load((repo_root / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}


def test_the_v3_definition_makes_a_build_context(repo_root, tmp_path):
    """ansible-builder create checks the definition against its v3 schema and writes the
    Containerfile a build would run; the collection is installed from Galaxy in it."""
    definition = yaml.safe_load((repo_root / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    assert [c["name"] for c in definition["dependencies"]["galaxy"]["collections"]] == ["edgeml.fleet"]
    subprocess.run([BUILDER, "create", "-f", str(repo_root / "execution-environment.yml"), "-c", str(tmp_path / "context"),
                    "--output-filename", "Containerfile"], capture_output=True, text=True, timeout=120, check=True)
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile
    requirements = yaml.safe_load((tmp_path / "context" / "_build" / "requirements.yml").read_text())
    assert requirements["collections"][0]["name"] == "edgeml.fleet"
