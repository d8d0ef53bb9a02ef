"""edge_host on the lab's real hosts: bad variables, missing prerequisites, check mode."""

import subprocess

import pytest


def sh(host, *cmd):
    return subprocess.run(["docker", "exec", host, *cmd], capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize("extra,variable", [
    ("edge_host_min_free_disk_mb=-5", "edge_host_min_free_disk_mb"),
    ("edge_host_connectivity=satellite", "edge_host_connectivity"),
    ("edge_host_min_free_disk_mb=lots", "edge_host_min_free_disk_mb"),
    ("edge_host_min_python=three", "edge_host_min_python"),
])
def test_bad_variable_fails_before_any_change(playbook, extra, variable):
    run = playbook("edgeml.fleet.provision", "-l", "edge-a2", "-e", extra)
    assert run.rc != 0
    name, result = run.failure("edge-a2")
    assert "Validat" in name, name
    assert variable in result["msg"]
    # Nothing but validation ran: no fact gathering, no probe, no change.
    ran = [task for task, _result in run.results("edge-a2")]
    assert all("Validat" in task for task in ran), ran
    assert run.stats["edge-a2"]["changed"] == 0


def test_disconnected_host_missing_packages_fails_with_one_message(playbook):
    before = sh("edge-c1", "ls", "-la", "/var/lib", "/etc").stdout
    # A CA bundle that isn't there stands in for a host without ca-certificates.
    run = playbook("edgeml.fleet.provision", "-l", "edge-c1",
                   "-e", "__edge_host_ca_bundle=/nonexistent/ca-certificates.crt")
    assert run.rc != 0
    name, result = run.failure("edge-c1")
    assert name.endswith("Stop where packages are missing and may not be installed")
    assert "edge-c1 is at a disconnected site" in result["msg"]
    assert "ca-certificates" in result["msg"]
    assert "offline bundle" in result["msg"] and "bootstrap_offline.yml" in result["msg"]
    assert run.stats["edge-c1"]["changed"] == 0
    assert sh("edge-c1", "ls", "-la", "/var/lib", "/etc").stdout == before


def test_connected_host_without_package_installs_allowed_fails_too(playbook):
    run = playbook("edgeml.fleet.provision", "-l", "edge-a2",
                   "-e", "__edge_host_ca_bundle=/nonexistent/ca-certificates.crt",
                   "-e", "edge_host_install_packages=false")
    assert run.rc != 0
    assert "ca-certificates" in run.failure("edge-a2")[1]["msg"]


def test_low_disk_threshold_names_the_numbers(playbook):
    run = playbook("edgeml.fleet.provision", "-l", "edge-b1",
                   "-e", "edge_host_min_free_disk_mb=999999999")
    assert run.rc != 0
    msg = run.failure("edge-b1")[1]["msg"]
    assert "edge-b1 does not meet the prerequisites: " in msg
    # measured at the store, or its nearest existing parent on a host not yet provisioned
    assert "MiB free at /var/lib" in msg and "edge_host_min_free_disk_mb wants 999999999" in msg


def test_check_mode_changes_nothing_then_apply_then_idempotent(playbook):
    """community.crypto's four steps, on a fresh account and fresh directories."""
    fresh = ["-l", "edge-b2", "-e", "edge_host_user=edgeml-t", "-e", "edge_host_group=edgeml-t",
             "-e", "edge_host_state_dir=/var/lib/edgeml-t", "-e", "edge_host_store_dir=/var/lib/edgeml-t/models",
             "-e", "edge_host_config_dir=/etc/edgeml-t",
             "-e", "edge_host_install_dir=/opt/edgeml-t"]
    try:
        check = playbook("edgeml.fleet.provision", "--check", *fresh)
        assert check.rc == 0, check.stderr
        assert check.stats["edge-b2"]["changed"] > 0
        assert sh("edge-b2", "test", "-e", "/var/lib/edgeml-t").returncode != 0
        assert sh("edge-b2", "getent", "passwd", "edgeml-t").returncode != 0

        apply = playbook("edgeml.fleet.provision", *fresh)
        assert apply.rc == 0 and apply.stats["edge-b2"]["changed"] > 0
        # Root's: the service's group may only read the store.
        assert sh("edge-b2", "stat", "-c", "%U %G %a", "/var/lib/edgeml-t/models").stdout.split() \
            == ["root", "edgeml-t", "750"]

        for args in (("--check",), ()):
            again = playbook("edgeml.fleet.provision", *args, *fresh)
            assert again.rc == 0 and again.stats["edge-b2"]["changed"] == 0, args
    finally:
        sh("edge-b2", "sh", "-c", "userdel edgeml-t; groupdel edgeml-t; "
                                  "rm -rf /var/lib/edgeml-t /etc/edgeml-t /opt/edgeml-t")
