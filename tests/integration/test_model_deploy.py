"""model_deploy on the lab's hosts: a zero-failure upgrade under traffic, the audit playbook,
and the site playbook run the way automation controllers run it (ansible-runner)."""

import json
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "edge-a2"
# Sends v2 infer requests to the local server until told to stop; prints what it saw.
CLIENT = r"""
import json, os, sys, time, urllib.request
body = json.dumps({"inputs": [{"name": "transaction", "datatype": "FP32", "shape": [1, 8],
                               "data": [40.0, 3, 0.2, 5.0, 2, 0, 900, 1.1]}]}).encode()
ok = failed = 0
versions, errors = [], []
deadline = time.monotonic() + float(sys.argv[1])
stop = sys.argv[2] if len(sys.argv) > 2 else None  # a file whose existence ends the run early
while time.monotonic() < deadline and not (stop and os.path.exists(stop)):
    try:
        req = urllib.request.Request("http://127.0.0.1:8080/v2/models/fraud-detector/infer", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.load(resp)
        ok += 1
        if not versions or versions[-1] != answer.get("model_version"):
            versions.append(answer.get("model_version"))
    except Exception as exc:
        failed += 1
        errors.append(str(exc))
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed, "versions": versions, "errors": errors[:5]}))
"""


def deploy(playbook, ref, *args):
    return playbook("playbooks/deploy_models.yml", "--limit", HOST, "-e", "edgeml_canary=false",
                    "-e", f"edgeml_fraud_ref={ref}", *args)


def served(host, model="fraud-detector"):
    return subprocess.run(["docker", "exec", host, "readlink",
                           f"/var/lib/edgeml/models/{model}/current"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_upgrade_under_traffic_loses_no_request(playbook):
    start = deploy(playbook, "models/fraud-detector:1.0")
    assert start.rc == 0, start.failure(HOST)
    before = served(HOST)
    result = {}

    def client():
        proc = subprocess.run(["docker", "exec", HOST, "python3", "-c", CLIENT, "40"],
                              capture_output=True, text=True, check=True)
        result.update(json.loads(proc.stdout))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        upgrade = deploy(playbook, "models/fraud-detector:1.1")
    finally:
        thread.join()
    assert upgrade.rc == 0, upgrade.failure(HOST)
    assert served(HOST) != before
    assert result["failed"] == 0, result["errors"]
    assert result["ok"] > 50
    assert len(result["versions"]) == 2, result["versions"]  # old, then new: never back and forth

    again = deploy(playbook, "models/fraud-detector:1.1")
    assert again.rc == 0 and again.stats[HOST]["changed"] == 0

    back = deploy(playbook, "models/fraud-detector:1.0")  # leave the lab on v1
    assert back.rc == 0, back.failure(HOST)
    assert served(HOST) == before


class Traffic:
    """The client above on HOST, in a thread, until the block ends; .result is what it saw."""

    def __init__(self):
        self.result, self.stop = {}, f"/tmp/stop-traffic-{time.monotonic_ns()}"
        self.thread = threading.Thread(target=self.run)

    def run(self):
        proc = subprocess.run(["docker", "exec", HOST, "python3", "-c", CLIENT, "300", self.stop],
                              capture_output=True, text=True, check=True)
        self.result.update(json.loads(proc.stdout))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        subprocess.run(["docker", "exec", HOST, "touch", self.stop], check=True)
        self.thread.join()


SHADOW = ["-e", "model_deploy_shadow=true", "-e", "model_deploy_shadow_min_requests=100",
          "-e", "model_deploy_shadow_timeout=120",
          "-e", "model_deploy_retry_rejected=true",  # judged again, whatever an earlier test did
          # scores within 1.0 always agree: the labels decide (1.1 scores differently from 1.0)
          "-e", "model_deploy_shadow_tolerance=1.0"]


def test_a_shadow_that_disagrees_is_removed_and_one_that_agrees_is_promoted(playbook):
    """The lab's regressed fraud version (labels inverted) runs as a shadow on live traffic: it
    is never promoted, and is removed; 1.1 agrees on the labels and is switched to, with no
    failed request meanwhile."""
    before = served(HOST)  # 1.0, as the test above left it
    with Traffic() as traffic:
        refused = deploy(playbook, "models/fraud-detector:1.3-regressed", *SHADOW)
    assert refused.rc != 0
    _task, failure = refused.failure(HOST)
    assert "the shadow version did not pass: the candidate agreed on 0.0 %" in json.dumps(failure), failure
    assert served(HOST) == before
    assert traffic.result["failed"] == 0, traffic.result["errors"]
    assert traffic.result["versions"] == ["sha256:" + before.rsplit("/", 1)[-1]]  # never answered by it
    config = subprocess.run(["docker", "exec", HOST, "cat", "/etc/edgeml/serve.yml"],
                            capture_output=True, text=True, check=True).stdout
    assert "shadow" not in config  # removed again
    with Traffic() as traffic:
        promoted = deploy(playbook, "models/fraud-detector:1.1", *SHADOW)
    assert promoted.rc == 0, promoted.failure(HOST)
    assert served(HOST) != before
    assert traffic.result["failed"] == 0, traffic.result["errors"]
    assert len(traffic.result["versions"]) == 2, traffic.result["versions"]
    # 1.1 is left in service: the next test switches back to 1.0


def test_a_gpu_host_serving_on_cpu_fails_the_gate_unless_cpu_is_allowed(playbook):
    """The lab's hosts have no GPU: told the host has one, the gate sees the model run on CPU
    (as an accelerator build that silently fell back would) and rolls the new version back."""
    before = served(HOST)  # 1.1, as the test above left it
    refused = deploy(playbook, "models/fraud-detector:1.0", "-e", "model_deploy_accelerator=nvidia")
    assert refused.rc != 0
    _task, failure = refused.failure(HOST)
    assert "runs on CPUExecutionProvider, expected CUDAExecutionProvider" in json.dumps(failure), failure
    assert served(HOST) == before  # the old version serves on
    allowed = deploy(playbook, "models/fraud-detector:1.0", "-e", "model_deploy_accelerator=nvidia",
                     "-e", "model_deploy_allow_cpu=true")  # and leaves the lab on v1
    assert allowed.rc == 0, allowed.failure(HOST)
    assert served(HOST) != before


def test_verify_reports_a_healthy_fleet_and_changes_nothing(playbook, tmp_path):
    # The whole site: earlier tests may have left hosts without a runtime or with other models.
    deployed = playbook("playbooks/site.yml", "-e", "edgeml_canary=false")
    assert deployed.rc == 0, [deployed.failure(h) for h in deployed.stats]
    report_path = tmp_path / "verify.json"
    audit = playbook("playbooks/verify.yml", "-e", f"edgeml_report_path={report_path}")
    assert audit.rc == 0
    assert all(stats["changed"] == 0 for stats in audit.stats.values()), audit.stats
    report = json.loads(report_path.read_text())
    assert report["playbook"] == "verify"
    by_host = {h["host"]: h for h in report["hosts"]}
    assert set(by_host) == {"edge-a1", "edge-a2", "edge-b1", "edge-b2", "edge-c1"}
    for host in ("edge-a1", "edge-a2", "edge-b1", "edge-b2"):
        assert [m["state"] for m in by_host[host]["models"]] == ["in service", "in service"]
        assert {m["health"] for m in by_host[host]["models"]} == {"ok"}
        assert all(m["served"].startswith("sha256:") for m in by_host[host]["models"])
    assert {m["state"] for m in by_host["edge-c1"]["models"]} == {"awaiting offline bundle"}


def test_verify_fails_on_an_altered_model_file(playbook, tmp_path):
    path = f"/var/lib/edgeml/models/fraud-detector/{served(HOST, 'fraud-detector')}/edgeml-model.json"
    subprocess.run(["docker", "exec", HOST, "sh", "-c", f"cp {path} /tmp/keep && echo ' ' >> {path}"],
                   check=True)
    try:
        audit = playbook("playbooks/verify.yml", "--limit", HOST,
                         "-e", f"edgeml_report_path={tmp_path / 'r.json'}")
    finally:
        subprocess.run(["docker", "exec", HOST, "sh", "-c", f"cat /tmp/keep > {path}"], check=True)
    assert audit.rc != 0
    model = json.loads((tmp_path / "r.json").read_text())["hosts"][0]["models"][0]
    assert model["state"] == "store damaged" and model["failed"]
    assert "edgeml-model.json" in model["message"]


def test_site_playbook_through_ansible_runner(tmp_path):
    private = tmp_path / "runner"
    (private / "project").mkdir(parents=True)
    (private / "env").mkdir()
    (private / "project" / "site.yml").write_text(
        "---\n- name: The whole site\n  ansible.builtin.import_playbook: edgeml.fleet.site\n")
    (private / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "EDGEML_LAB_STATE": str(ROOT / "lab" / ".state")}))
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-runner"), "run", str(private),
                           "-p", "site.yml", "--inventory", str(ROOT / "inventories/lab"),
                           "--limit", f"{HOST}:edge-c1", "--ident", "site-run"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    artifacts = private / "artifacts" / "site-run"
    assert (artifacts / "rc").read_text().strip() == "0"
    report = json.loads((artifacts / "edgeml-report.json").read_text())
    assert {h["host"] for h in report["hosts"]} == {HOST, "edge-c1"}
    assert report["totals"]["failed"] == 0
