"""edgeml.fleet.site run as an automation controller runs it: with ansible-runner, over SSH,
inside the execution environment image `make ee` builds (edgeml-lab/ee: the collection installed from its
tarball, with what meta/execution-environment.yml names), against the lab. Skipped when that
image is not built: `make ee` builds it and runs this test; make test does not build it (it
takes minutes and is not needed for anything else)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import ee

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "lab" / ".state"
WHEELHOUSE = Path(os.environ.get("HOME", "/root")) / ".cache" / "edgeml" / "wheelhouse"
# The lab's host reached over SSH, as a controller reaches hosts (the others use the docker
# connection, which the execution environment has no need to carry).
SSH_HOSTS = ["edge-a1"]


def _image():
    tag = ee.image_tag()
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    if found.returncode != 0:
        pytest.skip(f"the execution environment image {tag} is not built: `make ee` builds it and runs this test")
    return tag


def _private_data_dir(path):
    """ansible-runner's input directory, as a controller lays it out for a job."""
    shutil.copytree(ROOT / "inventories" / "lab", path / "inventory")
    (path / "project").mkdir()
    (path / "project" / "site.yml").write_text("---\n- name: The fleet's main job\n"
                                               "  ansible.builtin.import_playbook: edgeml.fleet.site\n")
    (path / "env").mkdir()
    (path / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_INVENTORY_ENABLED": "edgeml.fleet.sites,ansible.builtin.yaml",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
        "ANSIBLE_PIPELINING": "true",
        "EDGEML_LAB_STATE": str(STATE),
    }))
    return path


def test_the_main_job_runs_in_the_execution_environment(tmp_path):
    tag = _image()
    data = _private_data_dir(tmp_path / "job")
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    # --network host: the lab's hosts and registry as the controller's own network reaches them.
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "host",
         "-v", f"{data}:/runner", "-v", f"{STATE}:{STATE}:ro", "-v", f"{WHEELHOUSE}:/root/.cache/edgeml/wheelhouse",
         tag, "ansible-runner", "run", "/runner", "-p", "site.yml", "--ident", "site",
         "--limit", ",".join(SSH_HOSTS)],
        capture_output=True, text=True, timeout=1800, check=False)
    artifacts = data / "artifacts" / "site"
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert (artifacts / "status").read_text() == "successful"
    # The fleet report is a runner artifact (the summary writes it to AWX_ISOLATED_DATA_DIR).
    report = json.loads((artifacts / "edgeml-report.json").read_text())
    assert sorted(h["host"] for h in report["hosts"]) == SSH_HOSTS
    assert report["totals"]["failed"] == 0
    # Each host's models are in a job event of their own, as a controller shows them.
    shown = {}
    for path in (artifacts / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        data_ = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data_.get("task") == "Report each host's models":
            shown[data_["host"]] = data_["res"]["msg"]
    assert sorted(shown) == SSH_HOSTS
    for host, models in shown.items():
        assert sorted(m["name"] for m in models) == ["fraud-detector", "image-classifier"], host
        assert {m["failed"] for m in models} == {False}, models
    # The collection it ran is the image's own (only the lab's keys were mounted, not this checkout).
    listed = subprocess.run(["docker", "run", "--rm", "--network", "none", tag, "ansible-galaxy", "collection", "list",
                             "edgeml.fleet", "--format", "json"], capture_output=True, text=True, timeout=120, check=True)
    assert list(json.loads(listed.stdout)) == ["/usr/share/ansible/collections/ansible_collections"]
