from ansible_collections.edgeml.fleet.plugins.filter.fleet_report import fleet_report
from ansible_collections.edgeml.fleet.plugins.filter.fleet_table import fleet_table

DIGEST = "sha256:" + "ab" * 32


def model(name, state, failed=False, **extra):
    return dict({"name": name, "ref": f"models/{name}:1", "digest": DIGEST, "served": DIGEST,
                 "state": state, "health": "ok", "p50_ms": "1.5", "p95_ms": "None",
                 "failed": failed, "message": "why" if failed else ""}, **extra)


HOSTS = [
    {"inventory_hostname": "b1", "edgeml_site": "site-b", "edgeml_connectivity": "intermittent",
     "edge_host_report": {"provisioned": True, "python": "3.11.2", "free_mb": 900}},
    {"inventory_hostname": "a1", "edgeml_site": "site-a", "edgeml_connectivity": "connected",
     "model_deploy_report": [model("fraud", "deployed"), model("cnn", "rolled back", failed=True)]},
    {"inventory_hostname": "a2", "edgeml_site": "site-a", "edgeml_connectivity": "connected",
     "model_deploy_report": [model("fraud", "unchanged")]},
    {"inventory_hostname": "c1", "edgeml_site": "site-c", "edgeml_connectivity": "disconnected",
     "model_deploy_report": [model("fraud", "awaiting offline bundle")]},
    {"inventory_hostname": "c2", "edgeml_site": "site-c", "edgeml_connectivity": "disconnected"},
]


def test_table_has_a_row_per_host_and_model_sorted_by_site():
    lines = fleet_table(HOSTS, ["a1", "a2", "b1", "c1"])
    assert lines[0].split()[:6] == ["SITE", "HOST", "CONNECTIVITY", "MODEL", "DIGEST", "STATE"]
    rows = [line.split() for line in lines[1:7]]
    assert [r[:2] for r in rows] == [["site-a", "a1"], ["site-a", "a1"], ["site-a", "a2"],
                                     ["site-b", "b1"], ["site-c", "c1"], ["site-c", "c2"]]
    assert rows[0][3:9] == ["fraud", "abababababab", "deployed", "ok", "1.50", "-"]
    assert rows[1][3:6] == ["cnn", "abababababab", "rolled"]
    assert rows[3][3:6] == ["-", "-", "provisioned"]
    assert rows[5][5] == "not" or rows[5][5] == "FAILED"
    assert lines[7].startswith("5 hosts in 3 sites, 3 ok, 2 failed; models: ")
    assert lines[8] == "a1/cnn: why"
    # columns line up
    starts = {line.index("abababababab") for line in lines[1:3]}
    assert len(starts) == 1


def test_unreachable_host_is_failed_and_report_counts_states():
    report = fleet_report(HOSTS, ["a1", "b1", "c1"])
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host["a2"]["state"] == "FAILED" and not by_host["a2"]["reachable"]
    assert by_host["a1"]["state"] == "FAILED"  # a model failed
    assert by_host["c1"]["state"] == "awaiting offline bundle"
    assert by_host["b1"]["state"] == "provisioned" and by_host["b1"]["models"] == []
    assert by_host["a1"]["models"][0]["p95_ms"] is None
    assert by_host["a1"]["models"][1]["failed"] is True
    assert report["totals"] == {"hosts": 5, "sites": 3, "ok": 2, "failed": 3,
                                "model_states": {"deployed": 1, "rolled back": 1, "unchanged": 1,
                                                 "awaiting offline bundle": 1}}
    table = fleet_table(HOSTS, ["a1", "b1", "c1"])
    assert [line.split()[5] for line in table[1:4]][2] == "FAILED"


CARRIED = {"host": "c1", "reported_at": "2026-11-20T10:00:00Z",
           "runtime": {"arch": "x86_64", "onnxruntime": {"version": "1.32.0"}},
           "models": [model("fraud", "deployed"), model("cnn", "unchanged")]}


def test_a_carried_report_describes_a_disconnected_host_the_run_could_not_serve():
    hosts = [dict(h, edgeml_offline_report=CARRIED) if h["inventory_hostname"] == "c1" else h
             for h in HOSTS]
    # reached, but only marked as awaiting its bundle: the report from the site says more
    c1 = {h["host"]: h for h in fleet_report(hosts, ["a1", "c1"])["hosts"]}["c1"]
    assert c1["state"] == "ok" and c1["reported_at"] == "2026-11-20T10:00:00Z"
    assert [m["state"] for m in c1["models"]] == ["deployed", "unchanged"]
    assert c1["runtime"]["onnxruntime"] == "1.32.0"
    # not reached at all: still the report, not FAILED
    c1 = {h["host"]: h for h in fleet_report(hosts, ["a1"])["hosts"]}["c1"]
    assert c1["state"] == "ok" and not c1["reachable"]
    row = [line for line in fleet_table(hosts, ["a1"]) if " c1 " in line][0]
    assert "deployed (reported 2026-11-20T10:00:00Z)" in row


def test_a_host_deployed_in_this_run_speaks_for_itself():
    live = dict(HOSTS[3], model_deploy_report=[model("fraud", "unchanged")],
                edgeml_offline_report=dict(CARRIED, models=[model("fraud", "failed", failed=True)]))
    c1 = fleet_report([live], ["c1"])["hosts"][0]
    assert c1["state"] == "ok" and c1["reported_at"] is None
    assert c1["models"][0]["state"] == "unchanged"


def test_versions_held_by_a_window_are_not_failures():
    held = "staged, waiting for window Sat 02:00-04:00 Europe/Berlin (opens 2026-11-28T01:00:00Z)"
    hosts = [
        {"inventory_hostname": "b1", "edgeml_site": "site-b", "edgeml_connectivity": "intermittent",
         "model_deploy_report": [model("fraud", "staged", message=held), model("cnn", "unchanged")]},
        {"inventory_hostname": "b2", "edgeml_site": "site-b", "edgeml_connectivity": "intermittent",
         "model_deploy_report": [model("fraud", "waiting", message="waiting for download window daily 00:00-06:00 UTC"),
                                 model("cnn", "unchanged")]},
        {"inventory_hostname": "b3", "edgeml_site": "site-b", "edgeml_connectivity": "intermittent",
         "model_deploy_report": [model("fraud", "deployed", message="outside window Sat 02:00-04:00 UTC, override: CVE")]},
    ]
    report = fleet_report(hosts, ["b1", "b2", "b3"])
    assert [h["state"] for h in report["hosts"]] == ["staged", "waiting", "ok"]
    assert report["totals"]["failed"] == 0 and report["totals"]["ok"] == 3
    assert report["totals"]["model_states"] == {"staged": 1, "waiting": 1, "unchanged": 2, "deployed": 1}
    lines = fleet_table(hosts, ["b1", "b2", "b3"])
    assert lines[1].split()[3:6] == ["fraud", "abababababab", "staged"]
    assert lines[6].startswith("3 hosts in 1 sites, 3 ok, 0 failed")
    assert lines[7:] == [f"b1/fraud: {held}", "b2/fraud: waiting for download window daily 00:00-06:00 UTC"]
