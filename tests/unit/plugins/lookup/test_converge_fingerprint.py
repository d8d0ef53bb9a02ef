"""The desired-state fingerprint: it moves with what shapes a host, and only with that."""

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.edgeml.fleet.plugins.lookup.converge_fingerprint import (
    RUN_CONTROLS, LookupModule, role_options)

BASE = {
    # as the inventory gives it: a template Ansible trusts
    "edgeml_models": [{"name": "fraud", "ref": trust_as_template("models/fraud:{{ fraud_tag }}")}],
    "fraud_tag": "1.0",
    "edgeml_model_trust": {"keys": [{"name": "release", "public_key": "PEM"}]},
    "inference_runtime_port": 8080,
    "edgeml_site": "site-a",
    "ansible_host": "10.0.0.1",
}


def fingerprint(**changes):
    variables = dict(BASE, **changes)
    loader = DataLoader()
    lookup = LookupModule(loader=loader, templar=Templar(loader=loader, variables=variables))
    return lookup.run([], variables=variables)[0]


def test_the_same_desired_state_gives_the_same_fingerprint():
    assert fingerprint() == fingerprint()
    assert fingerprint().startswith("sha256:") and len(fingerprint()) == 71


@pytest.mark.parametrize("changes", [
    {"fraud_tag": "2.0"},  # a template inside edgeml_models: its value counts, not its text
    {"edgeml_models": []},
    {"edgeml_model_trust": {"keys": []}},
    {"edgeml_model_trust_revoked": ["sha256:" + "ab" * 32]},
    {"inference_runtime_port": 8081},
    {"inference_runtime_token": "s3cret"},
    {"model_deploy_health_requests": 5},
    {"edgeml_store_dir": "/srv/models"},
])
def test_what_shapes_a_host_moves_it(changes):
    assert fingerprint(**changes) != fingerprint()


@pytest.mark.parametrize("changes", [
    {"edgeml_site": "site-b"}, {"ansible_host": "10.0.0.2"}, {"edgeml_canary": False},
    {"edgeml_registry_password": "other"}, {"model_deploy_password": "other"},
    {"edgeml_report_path": "/tmp/r.json"}, {"edgeml_full_check": True},
])
def test_run_controls_endpoints_and_credentials_do_not(changes):
    assert fingerprint(**changes) == fingerprint()


def test_every_role_option_counts_but_the_run_controls():
    options = role_options()
    assert {"inference_runtime_port", "edge_host_state_dir", "model_deploy_models", "edgeml_store_dir"} <= options
    assert not options & RUN_CONTROLS
