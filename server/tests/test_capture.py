"""Data capture: a fair reservoir sample in bounded memory, files never world-readable, the
directory capped in bytes with the oldest files going first, links never followed, and off
unless configured."""

import asyncio
import json
import os
import random
import stat

import numpy as np
import pytest
from starlette.testclient import TestClient

from edgeml_serve.app import Server
from edgeml_serve.capture import CaptureWriter, Reservoir


def _offer(reservoir, value):
    reservoir.offer({"x": np.array([[value]], np.float32)}, {"y": np.array([[value * 2]], np.float32)})


def test_every_request_is_equally_likely_kept():
    kept = [0] * 100
    for trial in range(400):
        reservoir = Reservoir(10, 1 << 16, random.Random(trial))
        for value in range(100):
            _offer(reservoir, value)
        lines, seen, too_large = reservoir.drain()
        assert len(lines) == 10 and seen == 100 and too_large == 0
        for line in lines:
            kept[int(json.loads(line)["inputs"]["x"][0][0])] += 1
    # each value is kept with probability 0.1: 40 of 400 trials expected, first and last alike
    assert all(15 <= count <= 70 for count in kept), kept
    assert abs(sum(kept[:50]) - sum(kept[50:])) < 400


def test_memory_is_bounded_and_large_requests_are_left_out():
    reservoir = Reservoir(5, 200, random.Random(1))
    for value in range(10_000):
        _offer(reservoir, value)
    reservoir.offer({"x": np.zeros((1, 1000), np.float32)}, {})
    lines, seen, _too_large = reservoir.drain()
    assert len(lines) <= 5 and all(len(line) <= 200 for line in lines) and seen == 10_001
    assert reservoir.drain() == ([], 0, 0)  # a new period


def test_files_are_never_world_readable_and_the_oldest_go_first(tmp_path):
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        writer = CaptureWriter(str(tmp_path / "capture"), max_bytes=2500)
        paths = []
        for period in range(5):
            paths.append(writer.write("fraud", "sha256:" + "a" * 64, [b"x" * 999 + b"\n"]))
            os.utime(paths[-1], (1000 + period, 1000 + period))
            writer.trim()
    finally:
        os.umask(old_umask)
    left = [p for p in paths if os.path.exists(p)]
    assert left == paths[-2:]  # 2 x 1000 bytes fit under 2500: the three oldest were deleted
    for path in left:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    for directory in (tmp_path / "capture", tmp_path / "capture" / "fraud", tmp_path / "capture" / "fraud" / ("a" * 64)):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o750


def test_a_planted_link_is_neither_followed_nor_trimmed_through(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.jsonl").write_bytes(b"y" * 5000)
    root = tmp_path / "capture"
    root.mkdir()
    (root / "fraud").symlink_to(elsewhere)
    writer = CaptureWriter(str(root), max_bytes=10)
    with pytest.raises(OSError, match="not a directory of this user"):
        writer.write("fraud", "sha256:" + "a" * 64, [b"{}\n"])
    writer.trim()
    assert (elsewhere / "precious.jsonl").exists() and not list(elsewhere.glob("a*"))


def test_the_server_writes_a_period_sample_and_nothing_when_off(config_file, tmp_path):
    capture = tmp_path / "capture"
    on = tmp_path / "on.yml"
    on.write_text(config_file.read_text() + f"capture_dir: {capture}\ncapture_samples: 3\n")
    server = Server(str(on))
    with TestClient(server.app()) as client:
        for value in range(20):
            body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]}
            assert client.post("/v2/models/scale/infer", json=body).status_code == 200
        asyncio.run(server.flush_captures())
        [path] = list(capture.rglob("*.jsonl"))
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(lines) == 3 and all(line["outputs"]["y"][0] == [v * 2 for v in line["inputs"]["x"][0]] for line in lines)
        assert path.parent.name == "a" * 64 and path.parent.parent.name == "scale"
    off = tmp_path / "off"
    with TestClient(Server(str(config_file)).app()) as client:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
        assert client.post("/v2/models/scale/infer", json=body).status_code == 200
    assert not off.exists() and len(list(capture.rglob("*.jsonl"))) == 1
