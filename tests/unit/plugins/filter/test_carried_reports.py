"""Result reports carried home from disconnected sites are hostile files: each is checked on its
own, and one bad file is left out with a reason instead of stopping the fleet's report."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.edgeml.fleet.plugins.filter.carried_reports import carried_reports

SITES = {"c1": "site-c", "c2": "site-c"}


def _file(host, site="site-c", name=None, **extra):
    return [f"/carried/{name or host + '.json'}", json.dumps(dict({"host": host, "site": site, "drift": []}, **extra))]


def test_only_a_report_named_for_its_own_targeted_host_at_its_site_is_taken():
    files = [_file("c1"), _file("c2", name="c1-copy.json"), _file("c3"), _file("c2", site="site-a"),
             ["/carried/broken.json", '{"host": "c1", "dri'], ["/carried/big.json", "[" * 100000 + "]" * 100000]]
    result = carried_reports(files, ["c1", "c2"], SITES, needs="drift")
    assert [r["host"] for r in result["reports"]] == ["c1"]
    reasons = " | ".join(result["warnings"])
    for expected in ("c1-copy.json: names host 'c2', not the one in its file name",
                     "c3.json: c3 is not a host this run targets",
                     "c2.json: says site 'site-a'", "broken.json: not a result report", "big.json: not a result report"):
        assert expected in reasons, reasons
    assert carried_reports([_file("c1")], ["c1"], SITES, needs="models")["warnings"] == ["c1.json: has no models"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.one_of(st.text(max_size=60), st.none(), st.integers(),
                                                          st.builds(json.dumps, st.dictionaries(
                                                              st.sampled_from(["host", "site", "drift"]),
                                                              st.one_of(st.text(max_size=4), st.none(), st.just("c1")))))),
                max_size=6))
def test_any_files_give_reports_and_reasons_never_an_error(files):
    result = carried_reports([list(f) for f in files], ["c1"], SITES, needs="drift")
    assert all(r["host"] == "c1" for r in result["reports"])
    assert len(result["reports"]) + len(result["warnings"]) <= len(files) + 1


def test_the_bootstraps_own_summary_is_no_report_and_no_warning():
    out = carried_reports([["/r/summary.json", '{"hosts": [], "totals": {}}']], hosts=["c1"], sites={"c1": "site-c"})
    assert out == {"reports": [], "warnings": []}
