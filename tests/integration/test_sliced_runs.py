"""deploy_models.yml run in three slices, one site each, side by side through ansible-runner, as
a controller's workflow runs them (docs/controller.md): each slice's report is an artifact of its
own job and covers its own site, each host's models are in a job event, and the reports passed on
as workflow artifacts (set_stats) combine into one fleet report with every host."""

import base64
import json
import os
from pathlib import Path

import ansible_runner

ROOT = Path(__file__).resolve().parents[2]
SLICES = {"site_site_a": ["edge-a1", "edge-a2"], "site_site_b": ["edge-b1", "edge-b2"], "site_site_c": ["edge-c1"]}


def _job(base, ident, playbook, extravars):
    """A private data directory laid out as a controller lays one out for a job, started."""
    data = base / ident
    (data / "project").mkdir(parents=True)
    (data / "project" / "main.yml").write_text(
        f"---\n- name: The job template's playbook\n  ansible.builtin.import_playbook: {playbook}\n")
    envvars = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "EDGEML_LAB_STATE": str(ROOT / "lab" / ".state"),
               "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return ansible_runner.run_async(private_data_dir=str(data), playbook="main.yml", ident=ident,
                                    inventory=str(ROOT / "inventories" / "lab"), extravars=extravars,
                                    envvars=envvars, quiet=True)


def _events(runner, kind, task=None):
    return [e for e in runner.events if e.get("event") == kind
            and (task is None or e.get("event_data", {}).get("task") == task)]


def test_three_slices_side_by_side_make_one_fleet_report(tmp_path, playbook):
    # a converged fleet first (earlier tests may leave hosts without a runtime; the fast path
    # makes this one probe per host when nothing changed)
    converge = playbook("playbooks/site.yml", "-e", "edgeml_canary=false")
    assert converge.rc == 0, [converge.failure(h) for h in converge.stats]
    started = {target: _job(tmp_path, target, "edgeml.fleet.deploy_models", {"edgeml_target": target})
               for target in SLICES}
    artifacts = {}
    for target, (thread, runner) in started.items():
        thread.join(900)
        assert runner.status == "successful", (target, runner.stdout.read()[-3000:])
        # the slice's report is an artifact of its own job, and covers its own site only
        report = json.loads((Path(runner.config.artifact_dir) / "edgeml-report.json").read_text())
        assert report["target"] == target
        assert sorted(h["host"] for h in report["hosts"]) == SLICES[target]
        # each host's models are in a job event of their own
        shown = {e["event_data"]["host"] for e in _events(runner, "runner_on_ok", "Report each host's models")}
        assert shown == set(SLICES[target])
        # the workflow artifact (set_stats), merged as a controller merges its parents' artifacts
        stats = _events(runner, "playbook_on_stats")
        passed = stats[-1]["event_data"]["artifact_data"]
        (key, value), = passed.items()
        assert key.startswith(f"edgeml_slice_report_{target}_")
        # base64 JSON: the next node gets it as an extra variable, which Ansible would template
        # (a host's message such as "{{ lookup('pipe', ...) }}" would run on the controller)
        assert json.loads(base64.b64decode(value)) == report
        artifacts.update(passed)
    assert len(artifacts) == 3

    thread, runner = _job(tmp_path, "combine", "edgeml.fleet.combine_reports", {**artifacts, "edgeml_slices_expected": 3})
    thread.join(300)
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    combined = json.loads((Path(runner.config.artifact_dir) / "edgeml-report.json").read_text())
    assert [h["host"] for h in combined["hosts"]] == [h for hosts in SLICES.values() for h in hosts]
    assert combined["slices"] == 3 and combined["missing"] == 0 and combined["warnings"] == []
    assert combined["totals"]["hosts"] == 5 and combined["totals"]["sites"] == 3 and combined["totals"]["failed"] == 0
    states = {h["host"]: h["state"] for h in combined["hosts"]}
    assert {states[h] for h in SLICES["site_site_a"] + SLICES["site_site_b"]} == {"ok"}
    # disconnected: ok when its last bundle brought what it should serve, else waiting for one
    assert states["edge-c1"] in ("ok", "awaiting offline bundle")
    for target, hosts in SLICES.items():  # the combined report says of each host what its slice said
        mine = json.loads((tmp_path / target / "artifacts" / target / "edgeml-report.json").read_text())["hosts"]
        assert [h for h in combined["hosts"] if h["host"] in hosts] == mine
