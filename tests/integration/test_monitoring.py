"""Drift in the field on the lab: a model published with its reference sample serves on a host
of site-a and one of site-b; site-b's traffic has one feature shifted, site-a's is in
distribution. monitor.yml's fleet report flags exactly site-b and that feature, and its HTML
page carries a chart per site."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modules import run_module

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "lab" / ".state"
HOSTS = {"edge-a1": "site-a", "edge-b1": "site-b"}
SHIFTED = 3  # the feature site-b's traffic moves
REF = "models/fraud-monitor:1"


def _rows(count, seed, shift=0.0):
    """Transactions around the fraud model's golden one; feature SHIFTED moved by shift spreads."""
    meta = json.loads((Path(json.loads((STATE / "samples.json").read_text())["fraud-detector/1.0"])
                       / "edgeml-model.json").read_text())
    golden = np.array(meta["golden"][0]["inputs"]["transaction"], np.float32)[0]
    spread = np.maximum(np.abs(golden) * 0.2, 1.0)
    rows = golden + np.random.default_rng(seed).normal(0, 1, (count, 8)) * spread
    rows[:, SHIFTED] += shift * spread[SHIFTED]
    return rows.astype(np.float32)


def _send(host, rows):
    """POST the rows from inside the host, 50 a request, to its own server."""
    script = ("import json,sys,urllib.request\n"
              "rows=json.load(sys.stdin)\n"
              "for i in range(0,len(rows),50):\n"
              "  b=rows[i:i+50]\n"
              "  t={'name':'transaction','shape':[len(b),8],'datatype':'FP32','data':[v for r in b for v in r]}\n"
              "  body=json.dumps({'inputs':[t]}).encode()\n"
              "  url='http://127.0.0.1:8080/v2/models/fraud-monitor/infer'\n"
              "  urllib.request.urlopen(urllib.request.Request(url,body,{'Content-Type':'application/json'})).read()\n")
    subprocess.run(["docker", "exec", "-i", host, "python3", "-c", script], input=json.dumps(rows.tolist()),
                   text=True, check=True, capture_output=True)


@pytest.fixture(scope="module")
def served_with_reference(playbook, tmp_path_factory):
    work = tmp_path_factory.mktemp("monitor")
    model = Path(json.loads((STATE / "samples.json").read_text())["fraud-detector/1.0"])
    np.save(work / "validation.npy", _rows(3000, seed=1))
    published = run_module("model_publish", {
        "registry": "https://127.0.0.1:5000", "repository": REF.split(":", maxsplit=1)[0], "tag": "1",
        "model": str(model / "model.onnx"), "metadata": str(model / "edgeml-model.json"),
        "reference_sample": str(work / "validation.npy"), "username": "edgeml",
        "password": (STATE / "registry-password").read_text().strip(), "ca_path": str(STATE / "pki" / "ca.crt")})
    assert not published.get("failed"), published
    limit = ["-l", ",".join(HOSTS)]
    synced = playbook("tests/integration/playbooks/sync_lab.yml", *limit,
                      "-e", f"model_ref={REF}", "-e", "model_name=fraud-monitor")
    assert synced.rc == 0, synced.stderr
    serve = playbook("edgeml.fleet.runtime", *limit, "-e", '{"inference_runtime_models": ["fraud-monitor"]}')
    assert serve.rc == 0, serve.stderr
    yield published["digest"]
    playbook("edgeml.fleet.runtime", *limit)  # back to the lab's own models
    for host in HOSTS:  # and out of their stores, so later tests see the lab as it was
        subprocess.run(["docker", "exec", host, "rm", "-rf", "/var/lib/edgeml/models/fraud-monitor"], check=True)


def test_the_report_flags_exactly_the_drifted_site_and_feature(playbook, served_with_reference, tmp_path):
    _send("edge-a1", _rows(1500, seed=2))
    _send("edge-b1", _rows(1500, seed=3, shift=1.5))
    report_path = tmp_path / "drift.json"
    run = playbook("edgeml.fleet.monitor", "-l", ",".join(HOSTS),
                   "-e", '{"edgeml_models": [{"name": "fraud-monitor"}]}',
                   "-e", f"edgeml_drift_report_path={report_path}")
    assert run.rc == 0, run.stderr
    report = json.loads(report_path.read_text())
    by_site = {entry["site"]: entry for entry in report["sites"]}
    assert set(by_site) == {"site-a", "site-b"}
    assert not by_site["site-a"]["drifted"] and by_site["site-b"]["drifted"]
    assert [f["feature"] for f in by_site["site-b"]["features"] if f["drifted"]] == [f"transaction/{SHIFTED}"]
    assert [h["status"] for h in by_site["site-a"]["hosts"]] == ["steady"]
    assert by_site["site-b"]["hosts"][0]["version"] == served_with_reference
    page = report_path.with_suffix(".html").read_text()
    assert page.count("<svg") == 2 and "site-b" in page and 'class="drift"' in page
