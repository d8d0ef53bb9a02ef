"""`ansible-galaxy collection build` gives a tarball that installs and works."""

import os
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def test_build_install_and_use(tmp_path):
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path",
                    str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    tarball = next(tmp_path.glob("edgeml-fleet-*.tar.gz"))
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "plugins/inventory/sites.py" in names and "roles/edge_host/tasks/main.yml" in names
    assert "playbooks/site.yml" in names and "meta/runtime.yml" in names
    leaked = [n for n in names if n.split("/")[0] in (".venv", "lab", "build", ".git", "bench")]
    assert not leaked, leaked

    installed = tmp_path / "collections"
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    # Only the installed copy is visible: no repository config, no .collections link.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_CONFIG=str(config))
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p",
                    str(installed), str(tarball)], env=env, cwd=tmp_path, check=True,
                   capture_output=True)
    assert (installed / "ansible_collections/edgeml/fleet/MANIFEST.json").is_file()
    doc = subprocess.run([str(BIN / "ansible-doc"), "-t", "inventory", "edgeml.fleet.sites"],
                         env=env, cwd=tmp_path, check=True, capture_output=True, text=True)
    assert "edgeml_registry_endpoints" in doc.stdout
    inventory = tmp_path / "estate.sites.yml"
    inventory.write_text((ROOT / "inventories/example/estate.sites.yml").read_text())
    env["ANSIBLE_INVENTORY_ENABLED"] = "edgeml.fleet.sites"
    syntax = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "--syntax-check",
                             "edgeml.fleet.site"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
