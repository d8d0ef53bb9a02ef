"""Data capture on a lab host: turned on by the inventory, the server writes a sample of its
traffic (never world-readable), monitor.yml fetches it as a dataset with a manifest, and a link
the service's user plants in its capture directory fetches nothing it points at."""

import hashlib
import json
import subprocess
import time
from pathlib import Path

HOST, SITE = "edge-a2", "site-a"
CAPTURE = "/var/lib/edgeml/capture"
REQUESTS = r"""
import json, urllib.request
body = json.dumps({"inputs": [{"name": "transaction", "datatype": "FP32", "shape": [1, 8],
                               "data": [40.0, 3, 0.2, 5.0, 2, 0, 900, 1.1]}]}).encode()
for _ in range(30):
    urllib.request.urlopen(urllib.request.Request(
        "http://127.0.0.1:8080/v2/models/fraud-detector/infer", body, {"Content-Type": "application/json"})).read()
"""


def sh(*cmd, user="root"):
    return subprocess.run(["docker", "exec", "-u", user, HOST, *cmd], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_capture_is_written_fetched_and_never_follows_a_planted_link(playbook, tmp_path):
    deployed = playbook("playbooks/site.yml", "-l", HOST, "-e", "edgeml_canary=false")
    assert deployed.rc == 0, deployed.failure(HOST)
    on = ["-l", HOST, "-e", "inference_runtime_capture=true", "-e", "inference_runtime_capture_flush_seconds=1"]
    try:
        assert playbook("edgeml.fleet.runtime", *on).rc == 0
        sh("python3", "-c", REQUESTS)
        deadline = time.monotonic() + 60
        while not sh("find", CAPTURE, "-name", "*.jsonl") and time.monotonic() < deadline:
            time.sleep(1)
        files = sh("find", CAPTURE, "-name", "*.jsonl").split()
        assert files, "no capture file within 60 s"
        assert sh("stat", "-c", "%a %U", CAPTURE) == "750 edgeml"
        # at most 0640 (the server's mode); the unit's UMask=0077 makes them 0600
        assert {sh("stat", "-c", "%a %U", f) for f in files} == {"600 edgeml"}
        # The service's user plants a link to a root-only file next to its captures.
        version_dir = str(Path(files[0]).parent)
        sh("ln", "-s", "/etc/shadow", f"{version_dir}/zz-planted.jsonl", user="edgeml")
        home = tmp_path / "dataset"
        run = playbook("edgeml.fleet.monitor", "-l", HOST, "-e", "edgeml_capture_fetch=true",
                       "-e", f"edgeml_capture_home={home}", "-e", f"edgeml_drift_report_path={tmp_path / 'drift.json'}")
        assert run.rc == 0, run.stderr
        manifest = json.loads((home / "manifest.json").read_text())["files"]
        assert manifest and {(e["site"], e["host"], e["model"]) for e in manifest} == {(SITE, HOST, "fraud-detector")}
        for entry in manifest:
            data = (home / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            for line in data.decode().splitlines():
                assert json.loads(line)["inputs"]["transaction"][0][6] == 900.0
        assert not any("planted" in e["file"] for e in manifest)
        assert not any(b"root:" in p.read_bytes() for p in home.rglob("*.jsonl"))
    finally:
        playbook("edgeml.fleet.runtime", "-l", HOST)
        sh("rm", "-rf", CAPTURE)
