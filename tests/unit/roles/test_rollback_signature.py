"""model_deploy's rollback run by ansible-playbook on this machine (connection local), on a real
store: the version gone back to has its signature checked like a new one."""

import grp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from signing import KeyPair, make_model, sign_with_key, stage
from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: edgeml.fleet.model_deploy
        tasks_from: rollback
    - ansible.builtin.copy:
        content: "{{ model_deploy_report | to_json }}"
        dest: "{{ report_path }}"
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    return {"leaked": KeyPair(base, "release-2025"), "new": KeyPair(base, "release-2026")}


def _store(tmp_path, keys):
    """v1 signed by the key that leaked, then v2 by the new one: v2 serves, v1 is previous."""
    digests = []
    for tag, key in (("v1", "leaked"), ("v2", "new")):
        source = make_model(tmp_path / tag / "fraud-detector",
                            {"model.onnx": f"weights of {tag}".encode(), "edgeml-model.json": b"{}"})
        store, digest = stage(tmp_path / "store", "fraud-detector", source, tag=tag)
        store.save_signatures("fraud-detector", digest,
                              [sign_with_key(source, keys[key], tmp_path / f"{tag}.sig")])
        store.activate("fraud-detector", digest)
        digests.append(digest)
    return Store(str(tmp_path / "store")), digests


def _rollback(tmp_path, trust, revoked):
    variables = {
        "model_deploy_models": [{"name": "fraud-detector", "ref": "models/fraud-detector:1"}],
        "model_deploy_store_dir": str(tmp_path / "store"),
        "model_deploy_venv": str(Path(sys.executable).parent.parent),
        "edgeml_group": grp.getgrgid(os.getgid()).gr_name,
        "edgeml_model_trust": trust, "edgeml_model_trust_revoked": revoked,
        "inference_runtime_config_dir": str(tmp_path / "etc"),  # were it put into service
        "model_deploy_fail_host": False, "report_path": str(tmp_path / "report.json"),
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                           "localhost,", str(tmp_path / "play.yml"), "-e",
                           f"@{tmp_path / 'vars.json'}"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300, check=False)
    return proc


def test_rollback_to_a_version_signed_by_a_revoked_key_is_refused(tmp_path, keys):
    """The leaked key signed v1, which served before v2; the key is revoked fleet-wide. A rollback
    must not put v1 back into service: it is refused, reported, and v2 keeps serving."""
    store, (v1, v2) = _store(tmp_path, keys)
    assert store.previous("fraud-detector") == v1
    proc = _rollback(tmp_path, {"keys": [keys["leaked"].trust(), keys["new"].trust()]},
                     [keys["leaked"].fingerprint])
    assert store.current("fraud-detector") == v2, "the revoked key's version serves again"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [entry] = json.loads((tmp_path / "report.json").read_text())
    assert entry["failed"] and entry["state"] == "refused (untrusted)", entry
    assert "revoked" in entry["message"] and entry["served"] == v2 and entry["digest"] == v1


@pytest.mark.parametrize("trust, revoked", [
    ({"key": "typo for keys"}, []),  # policy worked out as off: checks skipped without a word
    ({"keys": [], "policy": False}, []),  # `policy: off` unquoted in YAML
    ({"keys": [], "policy": "Off"}, []),
    ("keys: [...]", []),
    ({}, "sha256:" + "0" * 64),  # a string, not a list
], ids=["misspelt-field", "unquoted-off", "capitalised", "a-string", "revoked-string"])
def test_a_trust_that_would_turn_checks_off_silently_stops_the_run(tmp_path, keys, trust, revoked):
    store, (_v1, v2) = _store(tmp_path, keys)
    proc = _rollback(tmp_path, trust, revoked)
    assert store.current("fraud-detector") == v2
    assert proc.returncode != 0 and "edgeml_model_trust must be a dict" in proc.stdout, \
        proc.stdout[-3000:]
