"""inference_runtime on a lab host: reload (not restart) for model changes, bad variables."""

import json
import subprocess

import pytest

HOST = "edge-a2"


def sh(*cmd):
    return subprocess.run(["docker", "exec", HOST, *cmd], capture_output=True, text=True,
                          check=True).stdout.strip()


def main_pid():
    return sh("systemctl", "show", "-p", "MainPID", "--value", "edgeml-inference.service")


def served(model):
    return json.loads(sh("python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                         f"'http://127.0.0.1:8080/v2/models/{model}').read().decode())"))


def test_models_change_reloads_without_restart(playbook):
    synced = playbook("tests/integration/playbooks/sync_lab.yml", "-l", HOST)
    digest = dict(synced.results(HOST))["Sync the pinned digest from the host's endpoints"]["digest"]
    setup = playbook("edgeml.fleet.runtime", "-l", HOST)
    assert setup.rc == 0, setup.stderr
    before = main_pid()
    serve = ["-l", HOST, "-e", '{"inference_runtime_models": ["fraud-detector-it"]}']
    try:
        run = playbook("edgeml.fleet.runtime", *serve)
        assert run.rc == 0 and run.stats[HOST]["changed"] > 0
        ran = [name for name, result in run.results(HOST) if result.get("changed")]
        assert any("Reload the inference server" in name for name in ran), ran
        assert not any("Restart the inference server" in name for name in ran), ran
        assert main_pid() == before  # reloaded in place, not restarted
        assert served("fraud-detector-it")["versions"] == [digest]
        # The installed server keeps running statistics of the new version, from zero.
        stats = served("fraud-detector-it/stats")
        assert stats["version"] == digest and stats["requests"] == 0
        assert [f["count"] for f in stats["inputs"]["transaction"]["features"]] == [0] * 8
        again = playbook("edgeml.fleet.runtime", *serve)
        assert again.stats[HOST]["changed"] == 0
    finally:
        playbook("edgeml.fleet.runtime", "-l", HOST)


@pytest.mark.parametrize("extra,fragment", [
    ("inference_runtime_port=70000", "inference_runtime_port must be 1-65535"),
    ("inference_runtime_threads=0", "inference_runtime_threads must be 1 or more"),
    ("inference_runtime_bind=0.0.0.0", "inference_runtime_token is empty"),
    ("inference_runtime_accelerator=tpu", "inference_runtime_accelerator"),
    # Blank tokens passed "a token is set" and left the server without one.
    ('{"inference_runtime_token": "   "}', "inference_runtime_token is only whitespace"),
    ('{"inference_runtime_bind": "0.0.0.0", "inference_runtime_token": " \\t\\n"}',
     "inference_runtime_token is only whitespace"),
    ('{"inference_runtime_token": "two words"}', "printable ASCII only"),
    ("inference_runtime_header_timeout=0", "timeouts above 0 seconds"),
    ("inference_runtime_limit_nofile=100", "inference_runtime_limit_nofile above"),
    ("inference_runtime_memory_max=lots", "a systemd size"),
])
def test_bad_variables_fail_before_any_change(playbook, extra, fragment):
    run = playbook("edgeml.fleet.runtime", "-l", HOST, "-e", extra)
    assert run.rc != 0
    name, result = run.failure(HOST)
    assert fragment in result["msg"], (name, result["msg"])
    assert run.stats[HOST]["changed"] == 0


def test_check_mode_on_a_fresh_install_changes_nothing(playbook):
    """Check mode against paths never installed: it reports changes and creates nothing."""
    fresh = ["-l", "edge-b2", "--check", "-e", "inference_runtime_venv=/opt/edgeml-t/venv",
             "-e", "inference_runtime_server_dir=/opt/edgeml-t/server",
             "-e", "inference_runtime_host_wheelhouse=/opt/edgeml-t/wheelhouse",
             "-e", "inference_runtime_config_dir=/etc/edgeml-t"]
    run = playbook("edgeml.fleet.runtime", *fresh)
    assert run.rc == 0, run.stderr
    assert run.stats["edge-b2"]["changed"] > 0
    for path in ("/opt/edgeml-t", "/etc/edgeml-t"):
        assert subprocess.run(["docker", "exec", "edge-b2", "test", "-e", path],
                              check=False).returncode != 0, path


def test_the_unit_is_sandboxed_and_serves(playbook):
    """systemd-analyze rates the unit 2.0 or less, and the server still loads and answers."""
    setup = playbook("edgeml.fleet.runtime", "-l", HOST)
    assert setup.rc == 0, setup.stderr
    rating = sh("systemd-analyze", "security", "--no-pager", "edgeml-inference.service")
    level = float(rating.rsplit("Overall exposure level for edgeml-inference.service:", 1)[1].split()[0])
    assert level <= 2.0, rating
    assert sh("systemctl", "show", "-p", "MemoryMax", "--value", "edgeml-inference.service") == str(2 << 30)
    ready = sh("python3", "-c", "import urllib.request; print(urllib.request.urlopen("
               "'http://127.0.0.1:8080/v2/health/ready').status)")
    assert ready == "200"


def test_changed_server_code_under_the_same_version_is_reinstalled(playbook):
    # pip leaves a version it has alone; the venv's key of the server code makes the role
    # reinstall (and restart) when the code differs, as after a fix merged without a version bump.
    setup = playbook("edgeml.fleet.runtime", "-l", HOST)
    assert setup.rc == 0, setup.stderr
    key = sh("cat", "/opt/edgeml/venv/.edgeml-serve-key")
    sh("sh", "-c", "echo 0000000000 > /opt/edgeml/venv/.edgeml-serve-key")
    run = playbook("edgeml.fleet.runtime", "-l", HOST)
    assert run.rc == 0, run.stderr
    ran = [name for name, result in run.results(HOST) if result.get("changed")]
    assert any("Install the server again when its code changed" in name for name in ran), ran
    assert any("Restart the inference server" in name for name in ran), ran
    assert sh("cat", "/opt/edgeml/venv/.edgeml-serve-key") == key
    assert playbook("edgeml.fleet.runtime", "-l", HOST).stats[HOST]["changed"] == 0
