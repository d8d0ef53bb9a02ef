"""One fleet report from a job's slices: every host once, totals counted again."""

from ansible_collections.edgeml.fleet.plugins.filter.combined_reports import combined_reports


def _host(name, site, state="ok", models=("deployed",)):
    return {"host": name, "site": site, "state": state, "models": [{"name": f"m{i}", "state": s}
                                                                   for i, s in enumerate(models)]}


def test_slices_add_up_to_the_fleet():
    out = combined_reports([
        {"hosts": [_host("b1", "site-b"), _host("b2", "site-b", "FAILED", ("failed", "deployed"))]},
        {"hosts": [_host("a1", "site-a"), _host("a2", "site-a")]},
        {"hosts": [_host("c1", "site-c", models=("awaiting offline bundle",))]},
    ])
    assert [h["host"] for h in out["hosts"]] == ["a1", "a2", "b1", "b2", "c1"]
    assert out["totals"] == {"hosts": 5, "sites": 3, "ok": 4, "failed": 1,
                             "model_states": {"deployed": 4, "failed": 1, "awaiting offline bundle": 1}}
    assert out["slices"] == 3 and out["warnings"] == [] and out["missing"] == 0
    assert combined_reports([{"hosts": []}], expected=3)["missing"] == 2


def test_a_host_in_two_slices_is_counted_once_and_odd_reports_are_left_out():
    out = combined_reports([{"hosts": [_host("a1", "site-a")]}, {"hosts": [_host("a1", "site-a", "FAILED")]},
                            "not a report", {"hosts": "x"}, {"hosts": [{"host": 3}]}])
    assert [(h["host"], h["state"]) for h in out["hosts"]] == [("a1", "FAILED")]  # a failure is never hidden
    assert out["totals"]["failed"] == 1
    assert out["slices"] == 3 and len(out["warnings"]) == 4
    empty = {"hosts": 0, "sites": 0, "ok": 0, "failed": 0, "model_states": {}}
    assert combined_reports([]) == {"hosts": [], "totals": empty, "slices": 0, "missing": 0, "warnings": []}
