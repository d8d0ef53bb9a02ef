"""The fast path of edgeml.fleet.site on the lab: a converged host costs one probe and leaves the
play, the report stays what a full run writes, and anything that drifted gets the full walk."""

import json
import subprocess

import pytest

CONNECTED = ("edge-a1", "edge-a2", "edge-b1", "edge-b2")
HOST = "edge-a2"
# the argument check of fleet_defaults, the probe play's four and the summary's last two (each
# host's models as a job event, the check that fails a host); the first host of the play also
# carries the run's run_once tasks (resolve, why hosts take the fast path, the pull-mode hosts'
# reports from the registry, the carried result reports' intake and its warnings, the summary,
# the JSON report, the workflow artifact)
FAST_TASKS = 7
RUN_ONCE = 8


def tasks(run, host):
    stats = run.stats[host]
    return stats["ok"] + stats["failures"] + stats["skipped"] + stats["rescued"] + stats["ignored"]


def site(playbook, *args):
    run = playbook("playbooks/site.yml", "-e", "edgeml_canary=false", *args)
    assert run.rc == 0, [run.failure(h) for h in run.stats]
    return run


def without_timings(path):
    report = json.loads(path.read_text())
    for host in report["hosts"]:
        for model in host["models"]:
            model.pop("p50_ms", None)
            model.pop("p95_ms", None)
    return report


def on_host(*argv, host=HOST):
    return subprocess.run(["docker", "exec", host, *argv], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def converged(playbook, tmp_path_factory):
    """A converged fleet (earlier tests may leave hosts without a runtime or a model), a full
    walk of every host (edgeml_full_check), then a run on the fast path."""
    base = tmp_path_factory.mktemp("fast")
    site(playbook)
    full = site(playbook, "-e", "edgeml_full_check=true", "-e", f"edgeml_report_path={base / 'full.json'}")
    fast = site(playbook, "-e", f"edgeml_report_path={base / 'fast.json'}")
    return {"full": full, "fast": fast, "base": base}


def test_converged_hosts_take_one_probe_and_change_nothing(converged):
    for host in CONNECTED:
        assert converged["full"].stats[host]["ok"] > 30  # the full walk
        limit = FAST_TASKS + (RUN_ONCE if host == CONNECTED[0] else 0)
        assert tasks(converged["fast"], host) <= limit, (host, converged["fast"].stats[host])
        assert converged["fast"].stats[host]["changed"] == 0
    # edge-c1 waits for its offline bundle: no run can change that while the digests stay
    assert tasks(converged["fast"], "edge-c1") <= FAST_TASKS


def test_the_report_is_what_a_full_run_writes(converged):
    full, fast = (without_timings(converged["base"] / name) for name in ("full.json", "fast.json"))
    assert fast == full
    for host in fast["hosts"]:
        if host["host"] in CONNECTED:
            assert host["state"] == "ok" and {m["state"] for m in host["models"]} == {"unchanged"}
            assert all(m["health"] == "ok" and m["signer"].startswith("key lab-release") for m in host["models"])


def test_a_lost_stamp_walks_in_full(playbook, converged):
    # (edgeml_full_check=true walks in full too: the fixture's full run shows it for every host)
    on_host("rm", "/var/lib/edgeml/converged.json")
    assert tasks(site(playbook, "--limit", HOST), HOST) > 30
    assert tasks(site(playbook, "--limit", HOST), HOST) <= FAST_TASKS + RUN_ONCE


def test_a_changed_file_gets_the_full_walk_which_repairs_it(playbook, converged):
    on_host("sh", "-c", "echo '# drifted' >> /etc/edgeml/serve.yml")
    repaired = site(playbook, "--limit", HOST)
    assert tasks(repaired, HOST) > 30
    assert "drifted" not in on_host("cat", "/etc/edgeml/serve.yml")
    again = site(playbook, "--limit", HOST)
    assert tasks(again, HOST) <= FAST_TASKS + RUN_ONCE  # alone in the run: it carries the run_once tasks


def test_a_stopped_service_gets_the_full_walk_which_starts_it(playbook, converged):
    on_host("systemctl", "stop", "edgeml-inference.service")
    repaired = site(playbook, "--limit", HOST)
    assert tasks(repaired, HOST) > 30
    assert on_host("systemctl", "is-active", "edgeml-inference.service").strip() == "active"
