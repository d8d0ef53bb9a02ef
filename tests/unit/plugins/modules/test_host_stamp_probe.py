"""host_stamp and host_probe run as Ansible runs them (separate processes) on a faked host tree:
what the stamp records, what the probe reads back as drift, and stamps nobody may trust."""

import hashlib
import json
import os

import pytest

from module_process import run_module

A = "sha256:" + "aa" * 32


@pytest.fixture
def host(tmp_path):
    etc, venv, store = tmp_path / "etc", tmp_path / "venv", tmp_path / "store"
    for path in (etc, venv / "lib" / "python3.11" / "site-packages" / "onnxruntime-1.32.0.dist-info",
                 store / "fraud" / "versions" / A[7:]):
        path.mkdir(parents=True)
    (etc / "serve.yml").write_text("models: [fraud]\n")
    version = store / "fraud" / "versions" / A[7:]
    (version / "model.onnx").write_bytes(b"onnx")
    (version / ".edgeml-version.json").write_text(json.dumps(
        {"files": {"model.onnx": {"size": 4, "digest": "sha256:" + hashlib.sha256(b"onnx").hexdigest()}}}))
    os.symlink("versions/" + A[7:], store / "fraud" / "current")
    args = {"path": str(tmp_path / "converged.json"), "fingerprint": "sha256:" + "f0" * 32,
            "files": [str(etc / "serve.yml"), str(etc / "token")], "dirs": [str(store)],
            "venv": str(venv), "user": "root", "group": "root", "store_dir": str(store),
            "models": [{"name": "fraud", "digest": A, "signer": "key release", "state": "unchanged"}],
            "health_checks": [{"name": "fraud", "ref": "models/fraud:1", "latency_p95_ms": 50}]}
    return {"tmp": tmp_path, "etc": etc, "venv": venv, "store": store, "args": args}


def stamp(host, **changes):
    return run_module("host_stamp", dict(host["args"], **changes), host["tmp"])


def probe(host):
    return run_module("host_probe", {"path": host["args"]["path"]}, host["tmp"])


def drift(host):
    # no systemd here: the service always shows as drift; the rest must not
    return [line for line in probe(host)["drift"] if not line.startswith("service ")]


def test_the_stamp_records_what_it_watches_and_no_secret(host):
    result = stamp(host)
    assert result["changed"] and result["fingerprint"] == host["args"]["fingerprint"]
    path = host["tmp"] / "converged.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    data = json.loads(path.read_text())
    assert data["state"]["file " + str(host["etc"] / "token")] == "absent"
    assert data["models"] == [{"name": "fraud", "digest": A, "served": A, "state": "served", "message": "",
                               "signer": "key release", "golden": None, "latency_p50_ms": None,
                               "latency_p95_ms": 50}]
    assert stamp(host)["changed"] is False  # the same state: left as it is
    assert stamp(host, fingerprint="sha256:" + "0" * 64)["changed"] is True


def test_check_mode_writes_nothing(host):
    result = stamp(host, _ansible_check_mode=True)
    assert result["changed"] and not (host["tmp"] / "converged.json").exists()


def test_a_host_as_it_was_left_shows_no_drift(host):
    stamp(host)
    answer = probe(host)
    assert answer["stamp"] and answer["fingerprint"] == host["args"]["fingerprint"]
    assert drift(host) == []
    assert answer["runtime"]["onnxruntime"] == {"installed": True, "version": "1.32.0"}
    assert answer["models"]["fraud"]["current"] == A


@pytest.mark.parametrize("change, expected", [
    (lambda h: (h["etc"] / "serve.yml").write_text("models: []\n"), "file {etc}/serve.yml"),
    (lambda h: (h["etc"] / "token").write_text("planted\n"), "file {etc}/token: absent when converged"),
    (lambda h: os.chmod(h["store"], 0o777), "directory {store}"),
    (lambda h: os.chmod(h["etc"] / "serve.yml", 0o666), "file {etc}/serve.yml"),  # same bytes, anyone may write
    (lambda h: (os.rename(h["etc"] / "serve.yml", h["etc"] / "real.yml"),
                os.symlink(h["etc"] / "real.yml", h["etc"] / "serve.yml")), "file {etc}/serve.yml"),
    (lambda h: (os.unlink(h["etc"] / "serve.yml"), os.mkfifo(h["etc"] / "serve.yml")), "file {etc}/serve.yml"),
    (lambda h: os.rename(h["venv"] / "lib" / "python3.11" / "site-packages" / "onnxruntime-1.32.0.dist-info",
                         h["venv"] / "lib" / "python3.11" / "site-packages" / "onnxruntime-1.20.0.dist-info"),
     "packages in {venv}"),
    # the version current names is no longer whole, or the link leads out of the store
    (lambda h: os.unlink(h["store"] / "fraud" / "versions" / A[7:] / "model.onnx"),
     "model fraud serves " + A + " (not intact)"),
    (lambda h: (h["store"] / "fraud" / "versions" / A[7:] / "model.onnx").write_bytes(b"on"),
     "model fraud serves " + A + " (not intact)"),
    (lambda h: (os.rename(h["store"] / "fraud" / "versions", h["tmp"] / "elsewhere"),
                os.unlink(h["store"] / "fraud" / "current"),
                os.symlink(h["tmp"] / "elsewhere" / A[7:], h["store"] / "fraud" / "current")),
     "model fraud serves " + A + " (not intact)"),
    (lambda h: (os.unlink(h["store"] / "fraud" / "current"),
                os.symlink("versions/" + "bb" * 32, h["store"] / "fraud" / "current")), "model fraud serves sha256:bb"),
])
def test_what_changed_since_is_drift(host, change, expected):
    stamp(host)
    change(host)
    lines = drift(host)
    assert any(line.startswith(expected.format(**host)) for line in lines), lines


@pytest.mark.parametrize("spoil", [
    lambda p: os.chmod(p, 0o666),  # others could write it: anyone could declare the host converged
    lambda p: (os.rename(p, str(p) + ".real"), os.symlink(str(p) + ".real", p)),
    lambda p: p.write_text("{not json"),
    lambda p: p.write_text(json.dumps({"version": 99})),
    lambda p: p.write_text("[]"),
    lambda p: p.write_bytes(b" " * (2 << 20)),
])
def test_a_stamp_nobody_may_trust_counts_as_none(host, spoil):
    stamp(host)
    spoil(host["tmp"] / "converged.json")
    answer = probe(host)
    assert answer["stamp"] is False and answer["fingerprint"] is None
    assert answer["drift"] and "no converge stamp" in answer["drift"][0]


def test_absent_removes_the_stamp(host):
    stamp(host)
    assert run_module("host_stamp", {"path": host["args"]["path"], "state": "absent"}, host["tmp"])["changed"]
    assert not (host["tmp"] / "converged.json").exists()
    assert probe(host)["stamp"] is False


def test_a_model_awaiting_its_bundle_is_recorded_with_what_served_then(host):
    os.unlink(host["store"] / "fraud" / "current")
    stamp(host, models=[{"name": "fraud", "digest": A, "served": "", "state": "awaiting offline bundle",
                         "message": "bring the model with the offline bundle"}])
    answer = probe(host)
    assert answer["models"]["fraud"]["state"] == "awaiting offline bundle"
    assert drift(host) == []  # nothing serves, as when converged; no health check of nothing
    os.symlink("versions/" + A[7:], host["store"] / "fraud" / "current")  # the bundle came
    assert any(line.startswith("model fraud serves " + A) for line in drift(host))
