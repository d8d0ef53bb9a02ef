"""Integration tests run against the lab (`make integration` brings it up first)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the lab package (its CA signs the test registries' certificates)
sys.path.insert(0, str(ROOT / "tests" / "lib"))  # helpers shared with the unit tests
sys.path.insert(0, str(ROOT / ".collections"))  # module_utils, imported by tests and helpers


class Run:
    """The result of one ansible-playbook run, read from the ansible.posix.json callback."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.data = json.loads(proc.stdout)
        self.stats = self.data["stats"]

    def results(self, host):
        """(task name, result) for every task that ran on host, in order."""
        for play in self.data["plays"]:
            for task in play["tasks"]:
                if host in task["hosts"]:
                    yield task["task"]["name"], task["hosts"][host]

    def failure(self, host):
        return next(((n, r) for n, r in self.results(host) if r.get("failed")), (None, None))


@pytest.fixture(scope="session")
def playbook():
    if subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "lab", "status"], cwd=ROOT,
                      capture_output=True, check=False).returncode != 0:
        pytest.fail("the lab is not up: run `make lab-up` (make integration does)")

    def run(name, *args):
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   EDGEML_LAB_STATE=str(ROOT / "lab" / ".state"))
        proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), name, *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, check=False)
        return Run(proc)
    return run


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real CNCF distribution registry on loopback with TLS and htpasswd auth."""
    from registries import LocalRegistry  # pylint: disable=import-outside-toplevel
    reg = LocalRegistry(tmp_path_factory.mktemp("registry"), auth="htpasswd")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    """The same with bearer-token auth, tokens from a small issuer."""
    from registries import LocalRegistry  # pylint: disable=import-outside-toplevel
    reg = LocalRegistry(tmp_path_factory.mktemp("token-registry"), auth="token")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def sample_models():
    """The lab's sample models (made by `lab up`): {(name, version): directory}."""
    from lab.models import read_samples  # pylint: disable=import-outside-toplevel
    return read_samples(ROOT / "lab" / ".state")
