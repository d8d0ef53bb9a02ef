import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.edgeml.fleet.plugins.filter.fleet_report import fleet_report
from ansible_collections.edgeml.fleet.plugins.filter.report_entry import MODEL_KEYS, report_entry

DIGEST = "sha256:" + "cd" * 32


def test_an_entry_has_the_usual_keys_with_their_defaults():
    assert report_entry("fraud", "removed", message="no longer assigned") == {
        "name": "fraud", "ref": "-", "digest": "-", "served": "", "state": "removed",
        "health": "-", "failed": False, "message": "no longer assigned"}


def test_optional_keys_appear_only_when_given():
    entry = report_entry("fraud", "deployed", digest=DIGEST, previous="", p50_ms=None, source="mirror")
    assert set(entry) - {"previous", "p50_ms", "source"} == set(report_entry("x", "y"))
    assert entry["previous"] == "" and entry["p50_ms"] is None and entry["source"] == "mirror"
    assert set(entry) <= set(MODEL_KEYS)


@pytest.mark.parametrize("failed, expected", [(True, True), ("True", True), ("true", True),
                                              (False, False), ("False", False), ("", False)])
def test_failed_is_a_boolean_however_it_was_rendered(failed, expected):
    assert report_entry("fraud", "failed", failed=failed)["failed"] is expected


def test_an_unknown_key_is_refused():
    with pytest.raises(AnsibleFilterError, match="unknown keys helth"):
        report_entry("fraud", "deployed", helth="ok")


def test_the_report_reads_what_the_constructor_builds():
    entry = report_entry("fraud", "rolled back", ref="models/fraud:2", digest=DIGEST, failed="True",
                         p50_ms="None", message="Health gate: wrong answers")
    host = {"inventory_hostname": "a1", "model_deploy_report": [entry]}
    report = fleet_report([host], ["a1"])
    assert report["hosts"][0]["state"] == "FAILED"
    assert report["hosts"][0]["models"] == [dict(entry, failed=True, p50_ms=None)]
