"""Running statistics: what they count, that their memory does not grow with traffic, the route,
the metrics, a reload of the same version keeping them and a new version starting afresh."""

import asyncio
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from conftest import switch
from starlette.testclient import TestClient

from edgeml_serve import stats as stats_mod
from edgeml_serve.app import Server
from edgeml_serve.stats import FeatureTable, OutputTable, VersionStats

INPUTS = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]


def reference(bins=4, low=0.0, high=8.0):
    step = (high - low) / bins
    edges = [low + step * i for i in range(bins)] + [high]
    return {"source": "validation.npy", "bins": bins, "inputs": {"x": {
        "layout": "features", "samples": 100, "shape": [4],
        "features": [{"name": f"f{i}", "edges": edges, "counts": [25] * bins} for i in range(4)]}}}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 256), st.sampled_from([4, 4, 4, 3]), st.booleans()),
                min_size=1, max_size=150), st.integers(0, 2**32 - 1))
def test_small_requests_summarised_together_give_what_one_by_one_gives(requests, seed):
    """Requests that wait and are summarised as one batch (the usual case) end up in exactly the
    tables they would have one by one, whatever their sizes (together far more rows than one
    request may add: a batch is not thinned), widths (a 3-wide one does not fit) and outputs
    (labels or scores) are."""
    requests = requests + [(256, 4, False)] * 8  # at least 2,048 rows together
    rng = np.random.default_rng(seed)
    batched, single = VersionStats("v", INPUTS, reference()), VersionStats("v", INPUTS, reference())
    for rows, width, labels in requests:
        arrays = {"x": rng.normal(4, 3, (rows, width)).astype(np.float32)}
        outputs = {"label": rng.integers(0, 3, rows)} if labels else {"y": arrays["x"] * 2}
        batched.observe(arrays, outputs)
        single._observe(arrays, outputs, 1)  # pylint: disable=protected-access
    mine, theirs = batched.report("m"), single.report("m")
    assert (mine["requests"], mine["skipped"]) == (len(requests), theirs["skipped"])
    for side in ("inputs", "outputs"):
        assert _close(mine[side], theirs[side]), (side, mine[side], theirs[side])


def _close(one, other):
    """Equal, floats within rounding (a batch's mean is merged in another order)."""
    if isinstance(one, dict):
        return one.keys() == other.keys() and all(_close(one[k], other[k]) for k in one)
    if isinstance(one, list):
        return len(one) == len(other) and all(_close(a, b) for a, b in zip(one, other))
    if isinstance(one, float) and isinstance(other, float):
        return one == pytest.approx(other, rel=1e-9, abs=1e-9)
    return one == other


def test_summaries_match_numpy_over_many_small_requests():
    rng = np.random.default_rng(5)
    stats = VersionStats("v1", INPUTS, reference())
    rows = rng.normal(4, 2, (1000, 4)).astype(np.float32)
    for start in range(0, 1000, 3):  # requests of 3 rows, so the buffer fills and flushes mid-way
        stats.observe({"x": rows[start:start + 3]}, {})
    report = stats.report("m")
    assert report["requests"] == 334 and report["skipped"] == 0
    assert report["reference"] == {"source": "validation.npy", "bins": 4}
    values = rows.astype(np.float64)
    for i, feature in enumerate(report["inputs"]["x"]["features"]):
        column = values[:, i]
        assert feature["name"] == f"f{i}" and feature["count"] == 1000
        assert np.isclose(feature["mean"], column.mean()) and np.isclose(feature["std"], column.std())
        assert feature["min"] == column.min() and feature["max"] == column.max()
        want = np.bincount(np.clip((column / 2).astype(int), 0, 3), minlength=4)  # edges 0,2,4,6,8
        assert feature["counts"] == want.tolist()
        assert feature["outside_reference"] == int(((column < 0) | (column > 8)).sum())


def test_a_small_spread_around_a_large_mean_keeps_its_digits():
    stats = VersionStats("v1", INPUTS, None)
    rows = 1e9 + np.tile(np.array([[0.0], [1.0]]), (500, 4))
    for row in rows:
        stats.observe({"x": row[None, :]}, {})
    feature = stats.report("m")["inputs"]["x"]["features"][0]
    assert feature["std"] == pytest.approx(0.5) and "counts" not in feature  # no reference: no bins


def test_nan_infinity_and_huge_values_are_counted_apart():
    """As the reference counts them: a sensor that starts sending them shows up as drift."""
    stats = VersionStats("v1", [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}], reference())
    stats.observe({"x": np.array([[np.nan, np.inf, 1.0, 1e308]], np.float64)}, {})
    stats.observe({"x": np.array([[1.0, 1.0, 1.0, 1e308]], np.float64)}, {})
    report = stats.report("m")
    features = report["inputs"]["x"]["features"]
    assert [f["nan"] for f in features] == [1, 1, 0, 2]
    assert [f["count"] for f in features] == [1, 1, 2, 0]
    assert sum(features[2]["counts"]) == 2 and sum(features[3]["counts"]) == 0
    json.dumps(report, allow_nan=False)  # what the route sends: never NaN or infinity


def test_values_far_above_the_range_land_in_the_last_bin():
    stats = VersionStats("v1", [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}], reference())
    stats.observe({"x": np.array([[1e20, 1e100, -1e100, 3.0]], np.float64)}, {})
    counts = [f["counts"] for f in stats.report("m")["inputs"]["x"]["features"]]
    assert counts[:3] == [[0, 0, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0]]


def test_zero_sized_and_malformed_references_do_not_stop_anything():
    image = [{"name": "x", "datatype": "FP32", "shape": [-1, -1, -1, -1]}]
    stats = VersionStats("v1", image, {"inputs": {"x": {"layout": "channels_first", "features": [{}, {}, {}]}}})
    stats.observe({"x": np.zeros((1, 0, 1, 1), np.float32)}, {})
    assert stats.report("m")["requests"] == 1
    for broken in ({"inputs": {"x": {"features": ["a", "b"]}}}, {"inputs": {"x": "str"}}, {"inputs": []},
                   {"inputs": {"x": {"features": [{"edges": ["a", "b"]}] * 4}}},
                   {"inputs": {"x": {"features": [{"edges": [3.0, 1.0]}] * 4}}}, "reference"):
        stats = VersionStats("v1", INPUTS, broken)
        stats.observe({"x": np.ones((1, 4), np.float32)}, {})
        assert "counts" not in stats.report("m")["inputs"]["x"]["features"][0]


def test_a_large_image_is_thinned_before_it_is_copied():
    """The statistics run on the event loop: a big request costs them a stride, not a copy."""
    table = FeatureTable("channels_first", 3)
    image = np.random.default_rng(0).integers(0, 255, (8, 3, 1080, 1920), np.uint8)  # 50 MB
    tracemalloc.start()
    assert table.observe(image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated: the image was copied before it was thinned"
    assert table.report()["features"][0]["count"] <= stats_mod.MAX_VALUES_PER_FEATURE


def test_images_per_channel_and_large_requests_are_strided():
    table = FeatureTable("channels_first", 3)
    image = np.zeros((2, 3, 64, 64), np.float32)
    image[:, 1] = 1.0
    image[:, 2] = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    assert table.observe(image)
    report = table.report()["features"]
    assert [f["mean"] for f in report[:2]] == [0.0, 1.0]
    assert report[2]["count"] <= stats_mod.MAX_VALUES_PER_FEATURE  # 8192 pixels, strided
    assert report[2]["min"] == 0.0 and 0.4 < report[2]["mean"] < 0.6
    assert not table.observe(np.zeros((2, 3, 8), np.float32))  # the wrong rank: skipped


def test_labels_are_counted_up_to_a_cap_and_scores_per_column():
    table = OutputTable()
    for value in range(stats_mod.MAX_LABELS + 10):
        table.observe(np.array([value, value], np.int64))
    report = table.report()
    assert len(report["counts"]) == stats_mod.MAX_LABELS and report["other"] == 20
    scores = OutputTable()
    scores.observe(np.array([[0.2, 0.8], [0.6, 0.4]], np.float32))
    report = scores.report()
    assert report["kind"] == "scores" and [f["max"] for f in report["features"]] == pytest.approx([0.6, 0.8])


def test_memory_stays_flat_however_much_traffic():
    stats = VersionStats("v1", INPUTS, reference(bins=20))
    rng = np.random.default_rng(1)
    rows = rng.normal(4, 2, (256, 4)).astype(np.float32)
    labels = rng.integers(0, 1000, 256)
    outputs = {"label": labels[:1], "scores": rows[:1]}
    for i in range(2000):  # warm: every table made, every label slot taken
        stats.observe({"x": rows[i % 256:i % 256 + 1]}, {"label": labels[i % 256:i % 256 + 1], "scores": rows[:1]})
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(20000):
        stats.observe({"x": rows[i % 256:i % 256 + 1]}, outputs)
    stats.report("m")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 << 10, f"statistics grew by {grown} bytes over 20000 requests"
    assert stats.report("m")["requests"] == 22000


# --- through the server ---------------------------------------------------------------------
@pytest.fixture
def referenced_store(store):
    """The store's versions a and b with a reference in their metadata."""
    for version in ("a", "b"):
        path = store / "scale" / "versions" / (version * 64) / "edgeml-model.json"
        meta = json.loads(path.read_text())
        meta["reference"] = reference()
        path.write_text(json.dumps(meta))
    return store


def _infer(client, rows):
    return client.post("/v2/models/scale/infer", json={"inputs": [
        {"name": "x", "shape": list(np.shape(rows)), "datatype": "FP32", "data": rows}]})


def test_the_route_the_metrics_and_a_reload(referenced_store, config_file):
    server = Server(str(config_file))
    with TestClient(server.app()) as client:
        for _request in range(5):
            assert _infer(client, [[1, 2, 3, 9]]).status_code == 200
        report = client.get("/v2/models/scale/stats").json()
        assert report["requests"] == 5 and report["version"] == "sha256:" + "a" * 64
        features = report["inputs"]["x"]["features"]
        assert [f["count"] for f in features] == [5] * 4 and features[3]["outside_reference"] == 5
        assert report["outputs"]["y"]["kind"] == "scores"
        text = client.get("/metrics").text
        assert 'edgeml_input_values_total{model="scale",input="x"} 20' in text
        assert 'edgeml_input_outside_reference_total{model="scale",input="x"} 5' in text
        asyncio.run(server.reload())  # the same version: the statistics stay
        assert client.get("/v2/models/scale/stats").json()["requests"] == 5
        switch(referenced_store, "b")
        asyncio.run(server.reload())  # a new version starts from zero
        fresh = client.get("/v2/models/scale/stats").json()
        assert fresh["requests"] == 0 and fresh["version"] == "sha256:" + "b" * 64
        assert client.get("/v2/models/nope/stats").status_code == 404


def test_statistics_off_and_a_failure_never_fails_a_request(store, tmp_path, config_file, monkeypatch):
    off = tmp_path / "off.yml"
    off.write_text(config_file.read_text() + "statistics: false\n")
    with TestClient(Server(str(off)).app()) as client:
        assert _infer(client, [[1, 2, 3, 4]]).status_code == 200
        assert "statistics: false" in client.get("/v2/models/scale/stats").json()["error"]

    def broken(self, arrays, outputs):
        raise RuntimeError("boom")
    monkeypatch.setattr(VersionStats, "observe", broken)
    with TestClient(Server(str(config_file)).app()) as client:
        assert _infer(client, [[1, 2, 3, 4]]).status_code == 200
        assert _infer(client, [[1, 2, 3, 4]]).status_code == 200
        report = client.get("/v2/models/scale/stats").json()  # one request cannot turn them off
        assert report["errors"] == 2
        assert 'edgeml_server_events_total{kind="stats_error"} 2' in client.get("/metrics").text


def test_a_bad_statistics_setting_is_refused(tmp_path, config_file):
    from edgeml_serve import config as config_mod  # pylint: disable=import-outside-toplevel
    bad = tmp_path / "bad.yml"
    bad.write_text(config_file.read_text() + "statistics: sometimes\n")
    with pytest.raises(config_mod.ConfigError, match="statistics must be true or false"):
        config_mod.load(str(bad))


def test_the_route_carries_the_models_answer_times_and_errors(store, config_file):
    from edgeml_serve.metrics import BUCKETS, _quantile  # pylint: disable=import-outside-toplevel
    with TestClient(Server(str(config_file)).app()) as client:
        for _request in range(20):
            assert _infer(client, [[1, 2, 3, 4]]).status_code == 200
        assert _infer(client, [[1, 2, 3]]).status_code == 400
        service = client.get("/v2/models/scale/stats").json()["service"]
    assert service["requests"] == 20 and service["errors"] == {"400": 1}
    assert 0 < service["latency_ms"]["p50"] <= service["latency_ms"]["p95"] <= BUCKETS[-1] * 1000
    # interpolated within the bucket, as Prometheus' histogram_quantile does
    hist = [0, 10, 20] + [20] * (len(BUCKETS) - 3) + [0.02, 20]
    assert _quantile(hist, 0.25) == 0.75 and _quantile(hist, 0.5) == 1.0 and _quantile(hist, 0.75) == 1.75
    assert _quantile([0] * len(BUCKETS) + [0.0, 0], 0.5) is None
    assert _quantile([0] * len(BUCKETS) + [99.0, 3], 0.5) is None  # beyond the last bucket


def test_spinning_is_on_unless_turned_off_and_must_be_a_boolean(tmp_path, config_file):
    from edgeml_serve import config as config_mod  # pylint: disable=import-outside-toplevel
    assert config_mod.load(str(config_file)).intra_op_spinning is True  # as onnxruntime's own default
    bad = tmp_path / "bad.yml"
    bad.write_text(config_file.read_text() + "intra_op_spinning: sometimes\n")
    with pytest.raises(config_mod.ConfigError, match="intra_op_spinning must be true or false"):
        config_mod.load(str(bad))
