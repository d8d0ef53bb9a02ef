import json

import pytest

from ansible_collections.edgeml.fleet.plugins.module_utils import _golden as golden


def test_flatten_and_shape():
    assert golden.flatten([[1, 2], [3, 4]]) == [1, 2, 3, 4]
    assert golden.shape_of([[1, 2, 3]]) == [1, 3]
    assert golden.shape_of([]) == [0]
    with pytest.raises(golden.GoldenError, match="ragged"):
        golden.shape_of([[1, 2], [3]])


@pytest.mark.parametrize("actual, expected, ok", [
    (1.00001, 1.0, True), (1.001, 1.0, False), (100.005, 100.0, True), (0, 0, True),
    (1, 1, True), (True, 1, False), ("a", "a", True), ("a", "b", False),
    (float("nan"), float("nan"), True), (1.0, float("nan"), False), (None, 1.0, False),
])
def test_close_is_relative_and_absolute(actual, expected, ok):
    assert golden.close(actual, expected, 1e-4) is ok


def test_compare_outputs_names_the_first_bad_value_and_checks_only_named_outputs():
    problems, worst = golden.compare_outputs(
        {"label": [[1]], "probabilities": [[0.2, 0.8]]}, {"label": [[0]]}, 1e-4)
    assert problems == ["output 'label': 1 of 1 values off (first at [0]: got 1, expected 0, "
                        "tolerance 0.0001)"]
    assert worst == 1
    assert golden.compare_outputs({"p": [0.5]}, {"p": [0.5, 0.5]}, 1e-4)[0] == [
        "output 'p' has 1 values, expected 2"]
    assert "missing" in golden.compare_outputs({}, {"p": [1]}, 1e-4)[0][0]
    assert golden.compare_outputs({"p": [0.5, 0.25]}, {"p": [[0.5, 0.25]]}, 1e-4) == ([], 0.0)


def test_percentiles_and_summary():
    values = [0.001 * i for i in range(1, 101)]
    assert golden.percentile(values, 50) == pytest.approx(0.050)
    assert golden.percentile(values, 95) == pytest.approx(0.095)
    assert golden.percentile([0.3], 95) == 0.3
    summary = golden.latency_summary([0.002, 0.001, 0.003])
    assert summary == {"p50_ms": 2.0, "p95_ms": 3.0, "max_ms": 3.0, "samples": 3}


@pytest.mark.parametrize("cases, message", [
    ({"inputs": {}}, "must be a list"),
    ([{"inputs": {"x": [[1]]}}], "needs 'inputs' and 'outputs'"),
    ([{"inputs": {}, "outputs": {}}], "needs 'inputs' and 'outputs'"),
    ([{"inputs": {"x": 1}, "outputs": {"y": [1]}}], "must be a \\(nested\\) list"),
    ([{"inputs": {"x": [[1, 2], [3]]}, "outputs": {"y": [1]}}], "ragged"),
])
def test_bad_cases_are_refused_with_where(cases, message):
    with pytest.raises(golden.GoldenError, match=message):
        golden.check_cases(cases, "edgeml-model.json")


def test_read_metadata(tmp_path):
    assert golden.read_metadata(str(tmp_path / "missing.json")) == {}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(golden.GoldenError, match="not readable as JSON"):
        golden.read_metadata(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(golden.GoldenError, match="expected a JSON object"):
        golden.read_metadata(str(tmp_path / "list.json"))
    (tmp_path / "ok.json").write_text(json.dumps({"tolerance": 0.1}))
    assert golden.read_metadata(str(tmp_path / "ok.json")) == {"tolerance": 0.1}


def test_signature_problems():
    actual = [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    assert golden.signature_problems(actual, [{"name": "x", "datatype": "FP32", "shape": [4, 8]}],
                                     "input") == []
    assert golden.signature_problems(actual, [{"name": "x", "datatype": "INT64"}], "input") == [
        "input 'x' is FP32, expected INT64"]
    assert golden.signature_problems(actual, [{"name": "x", "shape": [-1, 9]}], "input") == [
        "input 'x' has shape [-1, 8], expected [-1, 9]"]
    assert "missing" in golden.signature_problems(actual, [{"name": "y"}], "output")[0]
    assert "needs inputs the signature does not name" in golden.signature_problems(
        actual + [{"name": "z", "datatype": "FP32", "shape": [1]}], [{"name": "x"}], "input")[0]
    assert golden.signature_problems(actual, None, "input") == []


def test_judge_cases_numbers_the_failing_cases():
    cases = [{"inputs": {"x": [[1]]}, "outputs": {"y": [[1.0]]}},
             {"inputs": {"x": [[2]]}, "outputs": {"y": [[2.0]], "label": [1]}}]
    answers = {1: {"y": [[1.0]]}, 2: {"y": [2.5]}}  # flat or nested: compared flattened
    result = golden.judge_cases(cases, lambda case: answers[case["inputs"]["x"][0][0]], 1e-4)
    assert result["cases"] == 2 and result["failed"] == 1 and not result["passed"]
    assert result["max_abs_error"] == 0.5 and result["tolerance"] == 1e-4
    assert result["problems"][0].startswith("case 2: output 'y'")
    assert result["problems"][1] == "case 2: output 'label' is missing (got ['y'])"
    assert golden.judge_cases([], None, 0.1) == {"passed": True, "cases": 0, "failed": 0,
                                                 "max_abs_error": 0.0, "tolerance": 0.1,
                                                 "problems": []}


def test_time_runs_warms_up_then_times():
    calls = []
    summary = golden.time_runs(lambda: calls.append(1), 5, warmup=2)
    assert len(calls) == 7 and summary["samples"] == 5
    assert set(summary) == {"p50_ms", "p95_ms", "max_ms", "samples"}
