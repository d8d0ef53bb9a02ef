"""Shadow versions: a candidate beside the serving version, run on the same requests, compared;
the client always gets the serving version's answer."""

import asyncio
import time

import numpy as np
import pytest
from conftest import make_model, make_string_model, switch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from starlette.testclient import TestClient

from edgeml_serve import config as config_mod
from edgeml_serve.app import Server
from edgeml_serve.shadow import INLINE_ELEMENTS, LATENCY_WINDOW, SHADOW_PENDING, Shadow, agree

SERVING = "sha256:" + "a" * 64


def _config(tmp_path, store, shadow_line):
    path = tmp_path / "serve.yml"
    path.write_text(f"models:\n  - name: scale\n    path: {store}/scale/current\n{shadow_line}")
    return path


def _infer(client, rows):
    answer = client.post("/v2/models/scale/infer", json={"inputs": [
        {"name": "x", "shape": list(np.shape(rows)), "datatype": "FP32", "data": rows}]})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _settled(client, sent):
    """The shadow report once every request sent was either compared or skipped."""
    deadline = time.monotonic() + 10
    while True:
        report = client.get("/v2/models/scale/shadow").json()
        if report["requests"] + report["skipped"] == sent or time.monotonic() > deadline:
            return report
        time.sleep(0.01)


def test_an_agreeing_candidate_is_compared_and_never_answers(store, tmp_path):
    same = make_model(store / "scale" / "versions" / ("d" * 64), 2.0)
    with TestClient(Server(str(_config(tmp_path, store, f"    shadow: {same}\n"))).app()) as client:
        for value in range(40):
            answer = _infer(client, [[value, 1, 2, 3]])
            assert answer["model_version"] == SERVING
            assert answer["outputs"][0]["data"] == [value * 2, 2, 4, 6]
        report = _settled(client, 40)
        asked = client.post(f"/v2/models/scale/versions/{'d' * 64}/infer", json={"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[1, 2, 3, 4]]}]})
        assert asked.status_code == 404  # nobody can ask the candidate itself
    assert report["requests"] > 0 and report["agreed"] == report["requests"]
    assert report["agreement"] == 1.0 and report["errors"] == 0
    assert report["candidate_version"] == "sha256:" + "d" * 64 and report["serving_version"] == SERVING
    assert report["candidate_latency_ms"]["p95"] > 0 and report["serving_latency_ms"]["p95"] > 0


def test_a_disagreeing_candidate_is_counted_and_the_client_gets_the_serving_answer(store, tmp_path):
    other = store / "scale" / "versions" / ("b" * 64)  # x3 where the serving version does x2
    with TestClient(Server(str(_config(tmp_path, store, f"    shadow: {other}\n"))).app()) as client:
        for _request in range(20):
            assert _infer(client, [[1, 1, 1, 1]])["outputs"][0]["data"] == [2, 2, 2, 2]
        report = _settled(client, 20)
    assert report["requests"] > 0 and report["agreed"] == 0 and report["agreement"] == 0.0
    assert report["last_disagreement"] == "answers differ"


def test_scores_agree_within_the_tolerance_only(store, tmp_path):
    close = make_model(store / "scale" / "versions" / ("e" * 64), 2.001)
    for tolerance, expected in (("0.01", 1.0), ("0.0001", 0.0)):
        config = _config(tmp_path, store, f"    shadow: {close}\n    shadow_tolerance: {tolerance}\n")
        with TestClient(Server(str(config)).app()) as client:
            for _request in range(10):
                _infer(client, [[1, 2, 3, 4]])
            assert _settled(client, 10)["agreement"] == expected


def test_a_candidate_that_fails_counts_errors_and_one_that_does_not_load_changes_nothing(store, tmp_path):
    wrong_inputs = make_string_model(store / "scale" / "versions" / ("f" * 64))
    with TestClient(Server(str(_config(tmp_path, store, f"    shadow: {wrong_inputs}\n"))).app()) as client:
        for _request in range(5):
            _infer(client, [[1, 2, 3, 4]])
        report = _settled(client, 5)
        assert report["errors"] == report["requests"] > 0 and report["agreed"] == 0
        assert report["last_disagreement"] != "answers differ"  # onnxruntime's reason
    broken = store / "scale" / "versions" / ("c" * 64)  # not ONNX
    with TestClient(Server(str(_config(tmp_path, store, f"    shadow: {broken}\n"))).app()) as client:
        assert _infer(client, [[1, 2, 3, 4]])["model_version"] == SERVING
        missing = client.get("/v2/models/scale/shadow")
        assert missing.status_code == 404 and "loading" in missing.json()["shadow_failed"]
        assert client.get("/v2/health/ready").status_code == 200


def test_a_reload_keeps_removes_or_restarts_the_comparison(store, tmp_path):
    same = make_model(store / "scale" / "versions" / ("d" * 64), 2.0)
    config = _config(tmp_path, store, f"    shadow: {same}\n")
    server = Server(str(config))
    with TestClient(server.app()) as client:
        for _request in range(5):
            _infer(client, [[1, 2, 3, 4]])
        compared = _settled(client, 5)["requests"]
        asyncio.run(server.reload())  # nothing changed: the figures stay
        assert client.get("/v2/models/scale/shadow").json()["requests"] == compared
        switch(store, "b")
        asyncio.run(server.reload())  # a new serving version: compared afresh against it
        fresh = client.get("/v2/models/scale/shadow").json()
        assert fresh["requests"] == 0 and fresh["serving_version"] == "sha256:" + "b" * 64
        config.write_text(f"models:\n  - name: scale\n    path: {store}/scale/current\n")
        asyncio.run(server.reload())  # shadow removed from the configuration
        gone = client.get("/v2/models/scale/shadow")
        assert gone.status_code == 404 and "has no shadow version" in gone.json()["error"]
        assert "shadow_failed" not in gone.json()
        assert client.get("/v2/models/nope/shadow").status_code == 404


def test_a_shadow_expires_on_its_own_and_the_same_configuration_does_not_restart_it(store, tmp_path):
    """A deploy cut off while it judged leaves the shadow in serve.yml: the server drops it after
    shadow_expires_after, and a reload of that configuration (or a request) does not load it
    again; a new shadow setting does."""
    same = make_model(store / "scale" / "versions" / ("d" * 64), 2.0)
    config = _config(tmp_path, store, f"    shadow: {same}\n    shadow_expires_after: 1.5\n")
    server = Server(str(config))
    with TestClient(server.app()) as client:
        _infer(client, [[1, 2, 3, 4]])
        report = _settled(client, 1)
        assert report["requests"] == 1 and 0 < report["expires_in"] <= 1.5
        time.sleep(1.6)
        assert _infer(client, [[1, 2, 3, 4]])["model_version"] == SERVING  # serving goes on
        gone = client.get("/v2/models/scale/shadow")
        assert gone.status_code == 404 and "expired 1.5 s after it was loaded" in gone.json()["shadow_failed"]
        assert "scale" not in server.models.shadows
        asyncio.run(server.reload())  # the same configuration: stays dropped
        assert client.get("/v2/models/scale/shadow").status_code == 404
        config.write_text(config.read_text().replace("1.5", "60"))
        asyncio.run(server.reload())  # a new setting: a new comparison
        again = client.get("/v2/models/scale/shadow").json()
        assert again["requests"] == 0 and 59 < again["expires_in"] <= 60
        # A deploy run again after one was cut off names a new judging: the same candidate is
        # compared afresh even though an earlier judging of it expired.
        config.write_text(config.read_text().replace("60", "1") + "    shadow_id: run-1\n")
        asyncio.run(server.reload())
        time.sleep(1.1)
        _infer(client, [[1, 2, 3, 4]])
        assert client.get("/v2/models/scale/shadow").status_code == 404
        config.write_text(config.read_text().replace("run-1", "run-2"))
        asyncio.run(server.reload())
        fresh = client.get("/v2/models/scale/shadow").json()
        assert fresh["id"] == "run-2" and fresh["requests"] == 0 and fresh["expires_in"] > 0
        config.write_text(f"models:\n  - name: scale\n    path: {store}/scale/current\n")
        asyncio.run(server.reload())
        assert not server.models.shadow_expired and not server.models.shadow_failures


class _Stuck:
    """An executor whose work never runs: a candidate that has fallen behind."""

    def __init__(self):
        self.queued = 0

    def submit(self, *_args):
        self.queued += 1


def test_a_candidate_that_falls_behind_is_skipped_not_queued(store):
    from edgeml_serve.models import LoadedModel  # pylint: disable=import-outside-toplevel
    candidate = LoadedModel("scale", store / "scale" / "versions" / ("b" * 64), "model.onnx",
                            ["CPUExecutionProvider"], statistics=False)
    shadow, stuck = Shadow(candidate, SERVING, 0.001, []), _Stuck()
    shadow.inline = False  # a slow one: shadowed on the thread
    arrays = {"x": np.ones((1, 4), np.float32)}
    for _request in range(100):
        assert shadow.offer(stuck, arrays, None, {"y": arrays["x"] * 2}, 0.001) is None
    assert stuck.queued == SHADOW_PENDING and shadow.skipped == 100 - SHADOW_PENDING
    fast, jobs = Shadow(candidate, SERVING, 0.001, []), []
    fast.inline = True  # a fast one: the job comes back, to run once the answer is out
    for _request in range(10):
        jobs.append(fast.offer(stuck, arrays, None, {"y": arrays["x"] * 2}, 0.001))
    assert stuck.queued == SHADOW_PENDING and None not in jobs  # no slot taken: slow readers
    for job in jobs:                                            # cannot starve the others
        job()
    assert fast.requests == 10 and fast.pending == 0 and fast.agreed == 0  # x3, not x2
    big = {"x": np.ones((INLINE_ELEMENTS // 4 + 1, 4), np.float32)}  # too big for the event loop
    assert fast.offer(stuck, big, None, {"y": big["x"] * 2}, 0.001) is None
    assert stuck.queued == SHADOW_PENDING + 1 and fast.pending == 1  # went the thread's way


def test_a_request_for_outputs_not_compared_is_no_evidence(store, tmp_path):
    """shadow_outputs names y: a client asking for none of it neither agrees nor disagrees."""
    from edgeml_serve.models import LoadedModel  # pylint: disable=import-outside-toplevel
    candidate = LoadedModel("scale", store / "scale" / "versions" / ("b" * 64), "model.onnx",
                            ["CPUExecutionProvider"], statistics=False)
    shadow = Shadow(candidate, SERVING, 0.001, ["z"])
    arrays = {"x": np.ones((1, 4), np.float32)}
    shadow.offer(_Stuck(), arrays, None, {"y": arrays["x"] * 2}, 0.001)()
    assert (shadow.requests, shadow.agreed, shadow.skipped) == (0, 0, 1)


def test_the_shadow_figures_are_for_callers_on_the_host(store, tmp_path):
    same = make_model(store / "scale" / "versions" / ("d" * 64), 2.0)
    app = Server(str(_config(tmp_path, store, f"    shadow: {same}\n"))).app()
    with TestClient(app, client=("192.0.2.7", 40000)) as remote:
        assert remote.get("/v2/models/scale/shadow").status_code == 403
        assert _infer(remote, [[1, 2, 3, 4]])["model_version"] == SERVING  # inference is not


def test_latency_figures_take_fixed_memory(store):
    from edgeml_serve.models import LoadedModel  # pylint: disable=import-outside-toplevel
    candidate = LoadedModel("scale", store / "scale" / "versions" / ("a" * 64), "model.onnx",
                            ["CPUExecutionProvider"], statistics=False)
    shadow = Shadow(candidate, SERVING, 0.001, [])
    arrays = {"x": np.ones((1, 4), np.float32)}
    for _request in range(LATENCY_WINDOW * 3):
        shadow.pending += 1
        shadow._run(arrays, None, {"y": arrays["x"] * 2}, 0.001, True)  # pylint: disable=protected-access
    assert shadow.requests == LATENCY_WINDOW * 3 == shadow.agreed
    assert len(shadow.candidate_seconds) == len(shadow.serving_seconds) == LATENCY_WINDOW


FLOATS = hnp.arrays(np.float32, hnp.array_shapes(max_dims=2, max_side=4),
                    elements=st.floats(-1e6, 1e6, width=32))


@settings(max_examples=200, deadline=None)
@given(FLOATS, st.floats(0, 10))
def test_an_answer_agrees_with_itself_and_not_with_a_shift_beyond_the_tolerance(scores, tolerance):
    assert agree({"y": scores}, {"y": scores.copy()}, tolerance)
    shifted = scores.astype(np.float64) + tolerance * 2 + 1
    assert not agree({"y": scores}, {"y": shifted}, tolerance)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int64, hnp.array_shapes(max_dims=1, max_side=8), elements=st.integers(0, 3)),
       st.data())
def test_labels_agree_exactly_or_not_at_all(labels, data):
    assert agree({"label": labels}, {"label": labels.copy()}, 100.0)
    index = data.draw(st.integers(0, labels.size - 1))
    other = labels.copy()
    other.flat[index] += 1
    assert not agree({"label": labels}, {"label": other}, 100.0)  # no tolerance for a label
    assert not agree({"label": labels}, {"label": labels.reshape(-1, 1)}, 0)  # nor for a shape
    assert not agree({"label": labels}, {}, 0)  # nor for an answer without it
    assert not agree({"label": labels}, {"label": labels.astype(np.float64)}, 100.0)  # nor a score
    assert agree({"label": labels}, {"y": labels}, 0, outputs=["y"]) is None  # nothing compared
    assert agree({"label": labels, "y": np.zeros(1)}, {"label": other, "y": np.zeros(1)}, 0,
                 outputs=["y"])  # only the outputs named are compared


@pytest.mark.parametrize("line, message", [
    ("    shadow: relative/dir\n", "shadow must be an absolute path"),
    ("    shadow: /x\n    shadow_tolerance: .nan\n", "finite number >= 0"),
    ("    shadow: /x\n    shadow_tolerance: -1\n", "finite number >= 0"),
    ("    shadow: /x\n    shadow_outputs: label\n", "list of output names"),
    ("    shadows: /x\n", "unknown keys"),
    ("    shadow: /x\n    shadow_expires_after: 0\n", "seconds > 0"),
    ("    shadow: /x\n    shadow_expires_after: true\n", "seconds > 0"),
    ("    shadow: /x\n    shadow_expires_after: .inf\n", "seconds > 0"),
    ("    shadow: /x\n    shadow_id: 7\n", "shadow_id must be text"),
])
def test_a_bad_shadow_setting_is_refused(store, tmp_path, line, message):
    with pytest.raises(config_mod.ConfigError, match=message):
        config_mod.load(str(_config(tmp_path, store, line)))
