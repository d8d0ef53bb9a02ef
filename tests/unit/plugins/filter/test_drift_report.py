"""The fleet drift report and its HTML page: aggregation per site and model, hosts that were not
measured, and a page that escapes every name it shows and loads nothing from outside."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.edgeml.fleet.plugins.filter.drift_html import drift_html
from ansible_collections.edgeml.fleet.plugins.filter.drift_report import drift_report


def _result(model, status, psis, requests=500):
    features = [{"feature": str(i), "psi": p, "drifted": p is not None and p > 0.2, "count": 500}
                for i, p in enumerate(psis)]
    return {"model": model, "status": status, "version": "sha256:" + "a" * 64, "requests": requests,
            "max_psi": max([p for p in psis if p is not None], default=None),
            "drifted": [f"x/{f['feature']}" for f in features if f["drifted"]], "inputs": {"x": features}}


def _host(name, site, *results, connectivity="connected"):
    hostvars = {"inventory_hostname": name, "edgeml_site": site, "edgeml_connectivity": connectivity}
    if results:
        hostvars["edgeml_drift"] = {"results": list(results)}
    return hostvars


FLEET = [
    _host("a1", "site-a", _result("fraud", "steady", [0.01, 0.02])),
    _host("a2", "site-a", _result("fraud", "steady", [0.03, 0.01])),
    _host("b1", "site-b", _result("fraud", "drift", [0.02, 0.45])),
    _host("b2", "site-b", {"model": "fraud", "failed": False, "msg": "cannot read the server's statistics"}),
    _host("c1", "site-c", connectivity="disconnected"),
    _host("x9", "site-a"),
]


def test_sites_and_features_are_aggregated():
    report = drift_report(FLEET)
    assert report["totals"] == {"hosts": 6, "measured": 4, "models": 2, "drift": 1}
    site_a, site_b = report["sites"]
    assert (site_a["site"], site_a["drifted"], site_a["requests"]) == ("site-a", False, 1000)
    assert [f["psi"] for f in site_a["features"]] == [0.03, 0.02]  # the worst host per feature
    assert site_b["drifted"] and [f["feature"] for f in site_b["features"] if f["drifted"]] == ["x/1"]
    assert [h["status"] for h in site_b["hosts"]] == ["drift", "failed"]
    assert "cannot read" in site_b["hosts"][1]["message"]
    reasons = {u["host"]: u["reason"] for u in report["unmeasured"]}
    assert "result report" in reasons["c1"] and "unreachable" in reasons["x9"]


def test_a_disconnected_site_is_measured_through_its_carried_result_report():
    carried = _host("c1", "site-c", connectivity="disconnected")
    carried["edgeml_offline_report"] = {"host": "c1", "reported_at": "2026-11-20T08:00:00Z",
                                        "drift": [_result("fraud", "drift", [0.5, 0.01], requests=70)]}
    live = _host("c2", "site-c", dict(_result("fraud", "steady", [0.01, 0.01]),
                                      service={"p50_ms": 0.41, "p95_ms": 1.27, "errors": 3, "requests": 500}))
    report = drift_report([carried, live])
    assert report["unmeasured"] == [] and report["totals"]["measured"] == 2
    site, = report["sites"]
    assert site["drifted"] and site["requests"] == 570
    first, second = site["hosts"]
    assert (first["source"], first["reported_at"]) == ("result report", "2026-11-20T08:00:00Z")
    assert (second["source"], second["reported_at"]) == ("live", None)
    assert (second["p50_ms"], second["p95_ms"], second["errors"]) == (0.41, 1.27, 3)
    page = drift_html(report, threshold=0.2)
    assert "result report, 2026-11-20T08:00:00Z" in page and "<td>0.41 / 1.27</td><td>3</td>" in page
    assert "<td>- / -</td><td>-</td>" in page  # the carried report had no service figures
    # A host's live results win over an older carried report; a carried report without figures
    # (or with something else where they belong) leaves the host unmeasured, not the run failed.
    live["edgeml_offline_report"] = carried["edgeml_offline_report"]
    assert drift_report([live])["sites"][0]["hosts"][0]["source"] == "live"
    for odd in ({"host": "c1"}, {"host": "c1", "drift": "lots"}, "not a dict"):
        carried["edgeml_offline_report"] = odd
        assert drift_report([carried])["unmeasured"][0]["host"] == "c1"


def test_the_page_shows_a_chart_per_site_model_and_loads_nothing():
    page = drift_html(drift_report(FLEET), threshold=0.2)
    assert page.count("<svg") == 2 and page.count('class="bar"') == 4
    assert "site-b" in page and 'class="drift"' in page and "threshold 0.2" in page
    assert "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.text(max_size=30))
def test_every_name_is_escaped(host, site, message):
    """Host, site, model and feature names and messages come from inventories and hosts:
    none of them can put markup into the page."""
    hostile = _result("<script>alert(1)</script>", "drift", [0.5])
    hostile["inputs"] = {"<img src=x onerror=alert(1)>": hostile["inputs"]["x"]}
    hostile["message"] = message
    page = drift_html(drift_report([_host(host, site, hostile), _host(host + "<b>", site)]))
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page


def test_one_hosts_odd_values_do_not_break_the_fleet_report():
    odd = [{"model": "fraud", "status": "drift", "requests": "many", "max_psi": "0.9", "message": 5,
            "drifted": "x/0", "inputs": {"x": [{"feature": "0", "psi": "9"}, "f", 3]}},
           {"model": "fraud", "status": "steady", "requests": float("inf"), "max_psi": float("nan"), "inputs": [1]}]
    report = drift_report([_host("a1", "site-a", *odd), FLEET[0]])
    hosts = report["sites"][0]["hosts"]
    assert [h["requests"] for h in hosts] == [0, 0, 500] and hosts[0]["max_psi"] is None
    assert report["sites"][0]["features"][0]["psi"] == 0.01  # the string "9" is no PSI
    assert "<svg" in drift_html(report)


def test_skipped_unreachable_and_enormous_figures_neither_count_nor_break_the_report():
    skipped = _host("c1", "site-c", connectivity="disconnected")
    skipped["edgeml_drift"] = {"skipped": True, "results": [{"skipped": True}]}
    gone = _host("x1", "site-a")
    gone["edgeml_drift"] = {"unreachable": True, "results": []}
    huge = _host("a1", "site-a", _result("fraud", "steady", [10 ** 400, 0.01], requests=10 ** 400),
                 _result("other", "steady", [0.01], requests=1e308))
    twice = _host("a2", "site-a", _result("other", "steady", [0.01], requests=1e308))
    report = drift_report([skipped, gone, huge, twice])
    assert {u["host"] for u in report["unmeasured"]} == {"c1", "x1"} and report["totals"]["measured"] == 2
    assert [s["requests"] for s in report["sites"]] == [0, 0]  # numbers beyond any count: left out
    drift_html(report, threshold=0.2)  # and the page is written
