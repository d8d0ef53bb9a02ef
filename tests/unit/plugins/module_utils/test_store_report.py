"""model_info's report of the store, with the versions rejected on the host."""

import hashlib

from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store
from ansible_collections.edgeml.fleet.plugins.module_utils._store_report import describe_model

DIGEST = "sha256:" + hashlib.sha256(b"v1").hexdigest()


def test_a_model_with_only_a_rejection_is_described(tmp_path):
    store = Store(str(tmp_path))
    store.reject("m", DIGEST, "Verify: signature")
    problems = []
    assert describe_model(store, "m", True, problems) == {
        "current": None, "previous": None, "versions": [], "rejected": {DIGEST: "Verify: signature"}}
    assert problems == []
    assert describe_model(store, "other", False, problems)["rejected"] == {}
