"""Maintenance windows on the lab's site-b: outside the apply window a new version is staged but
not served, the override and the window itself switch it, and outside the download window nothing
is downloaded. The windows and the clock come as extra vars (the lab inventory has none); every
test leaves the host on the lab's fraud-detector 1.0."""

import json
import subprocess

import pytest

HOST = "edge-b1"
APPLY = [{"days": ["sat"], "start": "02:00", "end": "04:00", "timezone": "Europe/Berlin"}]
THURSDAY = "2026-11-26T12:00:00+01:00"  # outside Sat 02:00-04:00 Europe/Berlin
SATURDAY = "2026-11-28T02:30:00+01:00"  # inside it
LAB_MODELS = [  # inventories/lab/group_vars/sites.yml, repeated where a test adds a model
    {"name": "fraud-detector", "ref": "models/fraud-detector:1.0", "latency_p95_ms": 250,
     "acceptance": "{{ lookup('ansible.builtin.file', edgeml_lab_state ~ '/acceptance/fraud-detector.json') | from_json }}"},
    {"name": "image-classifier", "ref": "modelcars/image-classifier:1.0", "latency_p95_ms": 1000},
]


def store(host, path):
    return subprocess.run(["docker", "exec", host, "sh", "-c", f"ls /var/lib/edgeml/models/{path}"],
                          capture_output=True, text=True, check=False)


def served(host, model="fraud-detector"):
    return subprocess.run(["docker", "exec", host, "readlink", f"/var/lib/edgeml/models/{model}/current"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def deploy(playbook, tmp_path):
    """Run deploy_models on HOST with extra vars; (run, {model: report entry}, host state)."""
    def run(**extra):
        report = tmp_path / "report.json"
        extra = dict({"edgeml_canary": False, "edgeml_report_path": str(report)}, **extra)
        (tmp_path / "extra.json").write_text(json.dumps(extra))
        result = playbook("playbooks/deploy_models.yml", "--limit", HOST, "-e", f"@{tmp_path / 'extra.json'}")
        host = json.loads(report.read_text())["hosts"][0]
        return result, {m["name"]: m for m in host["models"]}, host["state"]

    start, _entries, _state = run()  # the lab's versions, whatever an earlier test left
    assert start.rc == 0, start.failure(HOST)
    yield run
    back, _entries, _state = run()
    assert back.rc == 0, back.failure(HOST)


def test_outside_the_apply_window_a_new_version_is_staged_not_served(deploy):
    before = served(HOST)
    new = {"edgeml_fraud_ref": "models/fraud-detector:1.1", "edgeml_maintenance_windows": APPLY}

    run, entries, state = deploy(model_deploy_now=THURSDAY, **new)
    assert run.rc == 0, run.failure(HOST)
    entry = entries["fraud-detector"]
    assert (entry["state"], entry["failed"], state) == ("staged", False, "staged"), entry
    assert entry["message"].startswith("staged, waiting for window Sat 02:00-04:00 Europe/Berlin (opens 2026-11-28T01:00:00Z)")
    assert served(HOST) == before  # the old version keeps serving ...
    assert entry["digest"].split(":")[1] in store(HOST, "fraud-detector/versions/").stdout  # ... the new one is staged
    assert entries["image-classifier"]["state"] == "unchanged"
    assert not [n for n, r in run.results(HOST) if n.startswith("Activate it") and not r.get("skipped")]

    # The override switches outside the window, and the report says so.
    run, entries, state = deploy(model_deploy_now=THURSDAY, edgeml_window_override="test: CVE fix", **new)
    assert run.rc == 0, run.failure(HOST)
    entry = entries["fraud-detector"]
    assert (entry["state"], state) == ("deployed", "ok"), entry
    assert entry["message"] == "outside window Sat 02:00-04:00 Europe/Berlin, override: test: CVE fix"
    assert served(HOST) != before

    # Back to 1.0 (no windows), then 1.1 inside the window: it switches.
    back, _entries, _state = deploy()
    assert back.rc == 0 and served(HOST) == before, back.failure(HOST)
    run, entries, state = deploy(model_deploy_now=SATURDAY, **new)
    assert run.rc == 0, run.failure(HOST)
    assert (entries["fraud-detector"]["state"], entries["fraud-detector"]["message"], state) == ("deployed", "", "ok")
    assert served(HOST) != before

    # A version already current is unchanged whatever the windows.
    run, entries, state = deploy(model_deploy_now=THURSDAY, edgeml_download_windows=APPLY, **new)
    assert run.rc == 0 and entries["fraud-detector"]["state"] == "unchanged", entries


def test_outside_the_download_window_nothing_is_downloaded(deploy):
    assert store(HOST, "window-probe").returncode != 0  # never on this host
    models = LAB_MODELS + [{"name": "window-probe", "ref": "models/image-classifier:1.0"}]
    run, entries, state = deploy(edgeml_models=models, model_deploy_now=THURSDAY, edgeml_download_windows=APPLY)
    assert run.rc == 0, run.failure(HOST)
    entry = entries["window-probe"]
    assert (entry["state"], entry["failed"], state) == ("waiting", False, "waiting"), entry
    assert entry["message"] == "waiting for download window Sat 02:00-04:00 Europe/Berlin (opens 2026-11-28T01:00:00Z)"
    assert store(HOST, "window-probe").returncode != 0  # nothing downloaded
    assert not [n for n, r in run.results(HOST) if n.startswith("Stage the version") and n.endswith("window-probe")]
    # What is already in service is still checked and unchanged.
    assert entries["fraud-detector"]["state"] == "unchanged" and entries["fraud-detector"]["health"] == "ok"
