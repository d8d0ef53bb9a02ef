"""model_sync's rejected-versions API: state=rejected records, present/active report and retry."""

import hashlib

import pytest

from module_process import run_module
from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store

DIGEST = "sha256:" + hashlib.sha256(b"manifest").hexdigest()


def run(tmp_path, args, check_mode=False):
    args = dict({"name": "m", "store_dir": str(tmp_path / "store"), "_ansible_check_mode": check_mode}, **args)
    return run_module("model_sync", args, tmp_path)


@pytest.fixture
def staged(tmp_path):
    """A store with one staged artifact version, DIGEST."""
    store = Store(str(tmp_path / "store"))
    store.ensure_dirs()
    data = b"onnx bytes"
    layer = {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data),
             "annotations": {"org.opencontainers.image.title": "model.onnx"}}
    with open(store.blob_path(layer["digest"]), "wb") as out:
        out.write(data)
    store.stage("m", DIGEST, {"shape": "artifact", "blobs": [layer["digest"]]},
                lambda tmp: store.link_artifact_files([layer], tmp))
    return store


def test_record_report_and_retry(tmp_path, staged):
    record = {"state": "rejected", "digest": DIGEST, "reason": "Health gate: golden cases answered wrong"}
    assert run(tmp_path, record, check_mode=True)["changed"]
    assert staged.rejection("m", DIGEST) is None  # check mode wrote nothing
    result = run(tmp_path, record)
    assert result["changed"] and result["rejected"] == record["reason"] and result["digest"] == DIGEST
    assert not run(tmp_path, record)["changed"]
    assert staged.rejection("m", DIGEST) == record["reason"]

    present = {"ref": "models/m:1", "digest": DIGEST, "state": "present"}
    for check_mode in (True, False):
        result = run(tmp_path, present, check_mode=check_mode)
        assert not result["changed"] and result["rejected"] == record["reason"]
        assert result["source"] == "store" and result["digest"] == DIGEST

    retry = dict(present, retry_rejected=True)
    result = run(tmp_path, retry, check_mode=True)
    assert result["changed"] and result["rejected"] is None
    assert staged.rejection("m", DIGEST) == record["reason"]  # check mode forgot nothing
    result = run(tmp_path, retry)
    assert result["changed"] and result["rejected"] is None
    assert staged.rejection("m", DIGEST) is None
    assert run(tmp_path, present)["rejected"] is None


def test_a_failing_plan_still_reports_the_rejection(tmp_path):
    Store(str(tmp_path / "store")).reject("m", DIGEST, "Verify: signature")
    result = run(tmp_path, {"ref": "models/m:1", "digest": DIGEST, "state": "present"}, check_mode=True)
    assert result["failed"] and "no registry endpoint" in result["msg"]
    assert result["rejected"] == "Verify: signature"


@pytest.mark.parametrize("args, message", [
    ({"state": "rejected", "digest": DIGEST}, "reason"),
    ({"state": "rejected", "reason": "bad"}, "digest"),
    ({"state": "rejected", "digest": DIGEST, "reason": "  "}, "reason must say why"),
    ({"state": "rejected", "digest": "sha256:../../x", "reason": "bad"}, "not a sha256 digest"),
    ({"state": "rejected", "digest": DIGEST, "reason": "bad", "name": "../etc"}, "model name"),
])
def test_bad_arguments_are_refused(tmp_path, args, message):
    result = run(tmp_path, args)
    assert result["failed"] and message in result["msg"]
    assert not (tmp_path / "store" / "m" / "rejected").exists()
