"""The fast path's decision under hostile or broken probe answers: it never says converged for a
host it cannot vouch for (a false "converged" skips a host that needs the full walk)."""

import hypothesis.strategies as st
from hypothesis import given

from ansible_collections.edgeml.fleet.plugins.filter.converge_verdict import converge_verdict

FP = "sha256:" + "f0" * 32
A, B = "sha256:" + "aa" * 32, "sha256:" + "bb" * 32
MODELS = [{"name": "fraud", "ref": "models/fraud:1"}]
DIGESTS = {"models/fraud:1": A}
GOOD_MODEL = {"current": A, "digest": A, "served": A, "state": "served", "signer": "key release",
              "healthy": True, "p50_ms": 3.0, "p95_ms": 4.5}


def probe(**changes):
    return dict({"stamp": True, "fingerprint": FP, "drift": [], "runtime": {}, "models": {"fraud": dict(GOOD_MODEL)}},
                **changes)


def verdict(answer, **kwargs):
    return converge_verdict(answer, **dict({"fingerprint": FP, "models": MODELS, "digests": DIGESTS}, **kwargs))


def test_the_baseline_is_converged():
    assert verdict(probe())["converged"]


def test_no_stamp_is_never_converged_even_without_a_drift_line():
    # host_probe always says why, but the verdict must not lean on a line of text
    assert not verdict(probe(stamp=False, models={}))["converged"]
    assert not verdict(probe(stamp=False, models={}), models=[])["converged"]
    assert not verdict({"drift": []}, models=[])["converged"]


def test_a_failed_or_skipped_probe_is_never_converged():
    assert not verdict({"failed": True, "msg": "boom"})["converged"]
    assert not verdict({"changed": False, "failed": False, "msg": "MODULE FAILURE"})["converged"]  # failed_when: false
    assert not verdict({"skipped": True, "drift": []})["converged"]
    assert not verdict(None)["converged"]
    assert not verdict({}, models=[])["converged"]


def test_a_served_model_that_was_not_health_checked_or_is_unhealthy_is_not_converged():
    unchecked = {k: v for k, v in GOOD_MODEL.items() if k not in ("healthy", "p50_ms", "p95_ms")}
    assert not verdict(probe(models={"fraud": unchecked}))["converged"]
    assert not verdict(probe(models={"fraud": dict(GOOD_MODEL, healthy=False, problem="x")}))["converged"]


def test_a_model_whose_current_version_moved_is_not_converged():
    assert not verdict(probe(models={"fraud": dict(GOOD_MODEL, current=B)}))["converged"]
    assert not verdict(probe(models={"fraud": dict(GOOD_MODEL, current=None)}))["converged"]


def test_duplicate_model_names_and_models_the_host_no_longer_has():
    twice = MODELS + MODELS
    assert not verdict(probe(), models=twice)["converged"]
    extra = probe(models={"fraud": dict(GOOD_MODEL), "old": dict(GOOD_MODEL)})
    assert not verdict(extra)["converged"]
    assert not verdict(probe(models={}))["converged"]


def test_a_moved_tag_or_an_unresolved_one_is_not_converged():
    assert not verdict(probe(), digests={"models/fraud:1": B})["converged"]
    assert not verdict(probe(), digests={})["converged"]
    assert not verdict(probe(), digests=None)["converged"]


def test_a_host_with_no_models_is_converged_only_with_a_stamp_that_says_so():
    assert verdict(probe(models={}), models=[])["converged"]
    assert not verdict(probe(), models=[])["converged"]


TEXT = st.text(max_size=8)
VALUES = st.one_of(st.none(), st.booleans(), TEXT, st.sampled_from([A, B, FP, "served", "awaiting offline bundle"]))
MODEL = st.fixed_dictionaries({}, optional={key: VALUES for key in GOOD_MODEL})
ANSWER = st.fixed_dictionaries({}, optional={
    "stamp": st.one_of(st.booleans(), st.none()), "fingerprint": st.sampled_from([FP, None, B]),
    "drift": st.lists(TEXT, max_size=2), "skipped": st.booleans(), "failed": st.booleans(),
    "models": st.dictionaries(st.sampled_from(["fraud", "old"]), MODEL, max_size=2)})


def _vouched(answer, full_check):
    """What a converged verdict must be able to point at in the probe's answer."""
    models = answer.get("models") or {}
    fraud = models.get("fraud") or {}
    if full_check or answer.get("skipped") or answer.get("stamp") is not True or answer.get("drift"):
        return False
    if answer.get("fingerprint") != FP or sorted(models) != ["fraud"] or fraud.get("digest") != A:
        return False
    if fraud.get("state") == "awaiting offline bundle":
        return fraud.get("current") == fraud.get("served")
    return fraud.get("state") == "served" and fraud.get("current") == A and fraud.get("healthy") is True


@given(ANSWER, st.booleans())
def test_converged_only_when_every_fact_vouches_for_it(answer, full_check):
    result = verdict(answer, full_check=full_check)
    if result["converged"]:
        assert _vouched(answer, full_check), answer
        assert result["reasons"] == []
    else:
        assert result["reasons"] and result["report"] == []
