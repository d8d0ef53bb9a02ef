"""The fast path's decision: a host skips the full walk only when everything matches."""

import pytest

from ansible_collections.edgeml.fleet.plugins.filter.converge_verdict import converge_verdict

FP = "sha256:" + "f0" * 32
A, B = "sha256:" + "aa" * 32, "sha256:" + "bb" * 32
MODELS = [{"name": "fraud", "ref": "models/fraud:1"}, {"name": "cls", "ref": "models/cls@" + B, "digest": B}]
DIGESTS = {"models/fraud:1": A}
RUNTIME = {"arch": "x86_64", "onnxruntime": {"installed": True, "version": "1.32.0"},
           "service": {"name": "edgeml-inference.service", "active": "active", "enabled": "enabled"}}


def probe(**changes):
    answer = {"stamp": True, "fingerprint": FP, "drift": [], "runtime": RUNTIME,
              "models": {"fraud": {"current": A, "digest": A, "served": A, "state": "served", "signer": "key release", "healthy": True,
                                   "p50_ms": 3.0, "p95_ms": 4.5},
                         "cls": {"current": B, "digest": B, "served": B, "state": "served", "signer": "key release", "healthy": True,
                                 "p50_ms": 7.0, "p95_ms": 9.0}}}
    answer.update(changes)
    return answer


def verdict(answer, **kwargs):
    return converge_verdict(answer, **dict({"fingerprint": FP, "models": MODELS, "digests": DIGESTS}, **kwargs))


def test_a_host_as_it_was_left_is_converged_and_reported_as_a_full_run_would():
    result = verdict(probe())
    assert result["converged"] and result["reasons"] == []
    assert result["runtime"] == RUNTIME
    fraud = result["report"][0]
    assert fraud == {"name": "fraud", "ref": "models/fraud:1", "digest": A, "served": A, "previous": A,
                     "state": "unchanged", "health": "ok", "failed": False, "message": "",
                     "p50_ms": 3.0, "p95_ms": 4.5, "source": "store", "signer": "key release"}
    assert result["report"][1]["digest"] == B  # a pinned digest needs no tag


@pytest.mark.parametrize("answer, kwargs, reason", [
    (probe(), {"full_check": True}, "edgeml_full_check is set"),
    (probe(), {"full_check": "True"}, "edgeml_full_check is set"),
    (probe(), {"fingerprint": "sha256:" + "0" * 64}, "the desired state changed"),
    (probe(drift=["file /etc/edgeml/serve.yml: sha256:1 when converged, sha256:2 now"]), {}, "serve.yml"),
    (probe(stamp=False, fingerprint=None, models={}, drift=["no converge stamp at /x"]), {}, "no converge stamp"),
    ({"skipped": True, "changed": False}, {}, "not probed"),
    ({"failed": True, "msg": "boom"}, {}, "not probed"),
    (probe(), {"digests": {"models/fraud:1": B}}, "fraud: " + B + " is assigned, " + A + " was when converged"),
    (probe(), {"digests": {}}, "models/fraud:1 is not resolved"),
    (probe(), {"models": MODELS[:1]}, "serves cls, fraud, assigned fraud"),
    (probe(), {"models": MODELS + [{"name": "new", "ref": "models/new@" + A, "digest": A}]}, "assigned cls, fraud, new"),
])
def test_anything_else_gets_the_full_walk_and_says_why(answer, kwargs, reason):
    result = verdict(answer, **kwargs)
    assert not result["converged"]
    assert result["report"] == [] and result["runtime"] == {}
    assert any(reason in line for line in result["reasons"]), result["reasons"]


def test_a_disconnected_host_awaiting_its_bundle_stays_converged_while_nothing_moves():
    awaiting = {"current": None, "digest": A, "served": None, "state": "awaiting offline bundle",
                "message": "edge-c1 has no registry endpoint; bring the model with the offline bundle"}
    answer = probe(models={"fraud": awaiting, "cls": probe()["models"]["cls"]})
    result = verdict(answer)
    assert result["converged"]
    assert result["report"][0] == {"name": "fraud", "ref": "models/fraud:1", "digest": A, "served": "",
                                   "state": "awaiting offline bundle", "health": "-", "failed": False,
                                   "message": awaiting["message"]}
    moved = verdict(answer, digests={"models/fraud:1": B})  # the tag moved: the bundle to bring changed
    assert not moved["converged"] and "was when converged" in moved["reasons"][0]
