"""Pull mode end to end on the lab (docs/pull.md). edge-p1 (lab extra `pull`) has no SSH port.
A technician enrols it once with its site's bundle (bootstrap.sh, as docs/offline.md says); after
that the tests never touch it: they publish bundles to the core registry, cut and restore the
site mirror's link to core, and learn what the host did only from the reports it sends to the
registry. Its timer runs every 20 s (the lab's site-p sets edgeml_pull_interval)."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from modules import run_module

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "lab" / ".state"
HOST = "edge-p1"
REPO = "bundles/site-p"
INVENTORY = ["-i", str(ROOT / "inventories" / "lab"), "-i", str(ROOT / "inventories" / "lab-pull")]
MIRROR, CORE_NET = "site-b-mirror", "edgeml-core"


def lab_registry():
    return {"registry": "https://127.0.0.1:5000", "username": "edgeml",
            "password": (STATE / "registry-password").read_text().strip(),
            "ca_path": str(STATE / "pki" / "ca.crt")}


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def publish(playbook, path, *extra):
    """Build site-p's bundle into path and publish it as bundles/site-p:latest; its digest."""
    run = playbook("edgeml.fleet.publish_bundle", *INVENTORY, "-e", f"offline_bundle_target={HOST}",
                   "-e", f"offline_bundle_dir={path}", *extra)
    assert run.rc == 0, run.failure("localhost")
    pushed = next(r for n, r in run.results("localhost") if n == "Publish it as an OCI artifact")
    return pushed["digest"]


class Reports:
    """The host's reports, as the controller reads them from the registry (report_pull)."""

    def __init__(self, dest):
        self.dest = dest

    def latest(self):
        got = run_module("report_pull", dict(lab_registry(), hosts=[HOST], dest=str(self.dest)))
        assert not got.get("failed") and not got["refused"], got
        path = self.dest / f"{HOST}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def wait_for(self, what, pred, seconds=300):
        """The first report for which pred holds; fails, showing the last one, after seconds."""
        deadline, report = time.monotonic() + seconds, None
        while time.monotonic() < deadline:
            report = self.latest()
            if report is not None and pred(report):
                return report
            time.sleep(3)
        pytest.fail(f"{HOST} sent no report where {what} in {seconds} s; the last: "
                    f"{json.dumps(report, indent=1)[:3000] if report else None}")


def applied(report):
    """(bundle digest, ok or failed) of the last apply, as the host's report says."""
    words = report.get("pull", {}).get("applied", "").split()
    return (words[0], words[2]) if len(words) >= 3 else (None, None)


def served(report):
    return {m["name"]: m.get("served") for m in report.get("models") or []}


@pytest.fixture(scope="module")
def enrolled(playbook, tmp_path_factory):
    """edge-p1 up and enrolled by a technician with its site's first bundle (fraud-detector 1.0)."""
    up = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "lab", "up", "--with", "pull"], cwd=ROOT,
                        capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    work = tmp_path_factory.mktemp("pull")
    first = publish(playbook, work / "v1")
    # The technician's visit: the bundle, the fleet's trusted signers and the registry
    # credentials (never in a bundle) onto the host, then bootstrap.sh.
    (work / "credentials.yml").write_text(
        f"edgeml_pull_username: edgeml\nedgeml_pull_password: {lab_registry()['password']}\n")
    docker("exec", HOST, "mkdir", "-p", "/etc/edgeml", "/etc/edgeml-pull", "/root/media")
    docker("cp", str(work / "v1"), f"{HOST}:/root/media/bundle")
    docker("cp", str(STATE / "bundle" / "allowed_signers"), f"{HOST}:/etc/edgeml/bundle-signers")
    docker("cp", str(work / "credentials.yml"), f"{HOST}:/etc/edgeml-pull/credentials.yml")
    boot = docker("exec", HOST, "sh", "/root/media/bundle/bootstrap.sh", check=False)
    assert boot.returncode == 0, boot.stdout[-3000:] + boot.stderr[-3000:]
    yield {"work": work, "first": first, "reports": Reports(work / "results")}
    docker("network", "connect", CORE_NET, MIRROR, check=False)  # should a test have failed midway
    docker("rm", "-f", HOST, check=False)


def test_the_enrolled_host_fetches_its_bundle_applies_it_and_reports_home(enrolled):
    reports = enrolled["reports"]
    report = reports.wait_for("the first bundle is applied",
                              lambda r: applied(r) == (enrolled["first"], "ok"))
    assert report["host"] == HOST and report["site"] == "site-p"
    assert report["pull"]["fetch"]["bundle"] == enrolled["first"]
    assert {m["health"] for m in report["models"]} == {"ok"}, report["models"]


def test_a_new_version_published_only_to_the_registry_arrives_across_a_cut_link(playbook, enrolled):
    reports = enrolled["reports"]
    before = served(reports.wait_for("the first bundle is applied",
                                     lambda r: applied(r) == (enrolled["first"], "ok")))
    docker("network", "disconnect", CORE_NET, MIRROR)
    try:
        second = publish(playbook, enrolled["work"] / "v2", "-e", "edgeml_fraud_ref=models/fraud-detector:1.1")
        # The mirror cannot reach core. It answers the host's check from its cache (the bundle in
        # place: nothing new), or the check fails once a connection it had open to core times
        # out (the report, which goes straight to core, then names the mirror). Either way the
        # host keeps serving what it had, through at least three checks.
        time.sleep(75)
        report = reports.latest()
        assert served(report) == before and applied(report) == (enrolled["first"], "ok"), report["pull"]
        if report["pull"]["fetch"].get("state") == "failed":
            assert MIRROR in report["pull"]["fetch"]["message"], report["pull"]
        else:
            assert report["pull"]["fetch"] == {"state": "current", "bundle": enrolled["first"], "message": ""}
    finally:
        docker("network", "connect", CORE_NET, MIRROR)
    report = reports.wait_for("the new bundle is applied",
                              lambda r: applied(r) == (second, "ok"))
    fraud = next(m for m in report["models"] if m["name"] == "fraud-detector")
    assert fraud["ref"].endswith("fraud-detector:1.1") and fraud["health"] == "ok", fraud
    assert fraud["served"] != before["fraud-detector"]
    assert served(report)["image-classifier"] == before["image-classifier"]
    enrolled["second"] = second


def test_a_tampered_bundle_is_refused_and_changes_nothing(enrolled):
    reports = enrolled["reports"]
    second = enrolled.get("second")
    if second is None:
        pytest.skip("needs the bundle of the test before")
    before = reports.latest()
    tampered = enrolled["work"] / "tampered"
    shutil.copytree(enrolled["work"] / "v2", tampered)
    inventory = tampered / "inventory" / "site.yml"
    inventory.write_text(inventory.read_text().replace("fraud-detector:1.1", "fraud-detector:1.3-regressed"))
    pushed = run_module("bundle_push", dict(lab_registry(), repository=REPO, path=str(tampered)))
    assert pushed["changed"], pushed
    report = reports.wait_for("the tampered bundle is refused",
                              lambda r: r["pull"]["fetch"].get("state") == "failed")
    assert "refused" in report["pull"]["fetch"]["message"], report["pull"]
    assert "inventory/site.yml" in report["pull"]["fetch"]["message"], report["pull"]
    assert served(report) == served(before)
    assert applied(report) == (second, "ok")
    # Put the good bundle back: the host has it, so its next check fetches nothing.
    run_module("bundle_push", dict(lab_registry(), repository=REPO, path=str(enrolled["work"] / "v2")))


def test_the_fleet_summary_shows_the_host_from_its_report_in_the_registry(playbook, enrolled, tmp_path):
    report = tmp_path / "summary.json"
    run = playbook("edgeml.fleet.summary", *INVENTORY, "-e", "edgeml_target=site_site_p",
                   "-e", f"edgeml_report_path={report}", "-e", f"edgeml_pull_results_dir={tmp_path / 'pulled'}")
    assert run.rc == 0, run.failure(HOST)
    host = next(h for h in json.loads(report.read_text())["hosts"] if h["host"] == HOST)
    assert host["state"] == "ok", host
    assert {m["name"] for m in host["models"]} == {"fraud-detector", "image-classifier"}
    assert (tmp_path / "pulled" / f"{HOST}.json").exists()


def test_a_compromised_pull_user_cannot_make_root_run_its_code_or_roll_back(enrolled):
    """A local attacker this time (so the test works on the host): whoever controls the pull user
    can put anything in its directory. Root's apply step runs none of it unless signed, and never
    an older bundle than the one in service."""
    if enrolled.get("second") is None:
        pytest.skip("needs the newer bundle of the test before in place")

    def on_host(*argv, user="root"):
        return docker("exec", "-u", user, HOST, *argv, check=False)

    def state():
        return on_host("sh", "-c", "cat /var/lib/edgeml-pull-results/edge-p1.json /var/lib/edgeml-pull-results/created").stdout

    on_host("systemctl", "stop", "edgeml-pull.timer")
    try:
        on_host("sh", "-c", "while systemctl is-active -q edgeml-pull.service; do sleep 1; done")
        before = state()
        fake = json.dumps({"digest": "sha256:" + "1" * 64, "created": "2030-01-01T00:00:00Z", "blobs": []})
        # 1. Its own bootstrap.sh: not the one the signed list names, so it never runs.
        planted = on_host("sh", "-c", "printf '#!/bin/sh\\ntouch /pwned\\n' > /var/lib/edgeml-pull/bundle/bootstrap.sh"
                          f" && printf '%s' '{fake}' > /var/lib/edgeml-pull/bundle.digest", user="edgeml-pull")
        assert planted.returncode == 0, planted.stderr
        run = on_host("/opt/edgeml/bin/edgeml-pull-apply")
        assert run.returncode != 0, run
        assert "bootstrap.sh: not the file SHA256SUMS lists" in run.stderr and "nothing applied" in run.stdout, run
        assert on_host("test", "-e", "/pwned").returncode != 0
        # 2. A link where a listed file was (to read, as root, what it may not): never followed.
        planted = on_host("sh", "-c", "cd /var/lib/edgeml-pull/bundle && first=$(head -n 1 SHA256SUMS | cut -c67-)"
                          " && rm -f \"$first\" && ln -s /etc/shadow \"$first\"", user="edgeml-pull")
        assert planted.returncode == 0, planted.stderr
        run = on_host("/opt/edgeml/bin/edgeml-pull-apply")
        assert run.returncode != 0 and "Too many levels of symbolic links" in run.stderr, run
        # 3. A sparse file as large as a disk (it costs the pull user nothing, root would write
        #    every byte): refused before anything is copied, and no snapshot is left behind.
        planted = on_host("sh", "-c", "cd /var/lib/edgeml-pull/bundle && first=$(head -n 1 SHA256SUMS | cut -c67-)"
                          " && rm -f \"$first\" && truncate -s 1T \"$first\"", user="edgeml-pull")
        assert planted.returncode == 0, planted.stderr
        run = on_host("/opt/edgeml/bin/edgeml-pull-apply")
        assert run.returncode != 0 and "no room for a copy of the bundle" in run.stderr, run
        assert on_host("sh", "-c", "ls /var/tmp | grep -c edgeml-pull-apply || true").stdout.strip() == "0"
        # 4. An older bundle, validly signed for this host: refused.
        on_host("rm", "-rf", "/var/lib/edgeml-pull/bundle", user="edgeml-pull")
        docker("cp", str(enrolled["work"] / "v1"), f"{HOST}:/var/lib/edgeml-pull/bundle")
        on_host("chown", "-R", "edgeml-pull:edgeml-pull", "/var/lib/edgeml-pull/bundle")
        run = on_host("/opt/edgeml/bin/edgeml-pull-apply")
        assert run.returncode != 0, run
        assert "before the newest bundle this host has installed" in run.stderr, run
        assert state() == before
    finally:
        # Back to what the registry says: the next fetch puts the published bundle back in place.
        on_host("rm", "-rf", "/var/lib/edgeml-pull/bundle", "/var/lib/edgeml-pull/bundle.digest")
        on_host("systemctl", "start", "edgeml-pull.timer")
