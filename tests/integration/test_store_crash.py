"""The store under crashes and concurrency, against a real registry (CNCF distribution).

- kill -9 at random moments of sync, activation, pruning and garbage collection, then a re-run:
  `current` is never mixed or unloadable, no blob's content differs from its name;
- two syncs and a clean-up started together on one store: all succeed or fail clearly;
- a zero-length blob left by a power cut is detected and fetched again.

`make test` runs a few crash trials; `make soak` runs 50 (EDGEML_CRASH_TRIALS).
"""

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from modules import module_command, module_env, run_module
from registries import FlakyLink, big_file
from test_model_sync import loads_and_answers, publish, sync

from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store

TRIALS = int(os.environ.get("EDGEML_CRASH_TRIALS", "12"))


@pytest.fixture(scope="module")
def versions(registry, sample_models, tmp_path_factory):
    """Three targets that differ in shape and size: (ref, digest)."""
    weights = big_file(tmp_path_factory.mktemp("crash") / "weights.bin", 8 << 20)
    targets = [
        ("models/crash:1.0", publish(registry, "models/crash", "1.0",
                                     sample_models[("fraud-detector", "1.0")])["digest"]),
        ("modelcars/crash:1.1", publish(registry, "modelcars/crash", "1.1",
                                        sample_models[("fraud-detector", "1.1")],
                                        shape="modelcar")["digest"]),
        ("models/crash:fat", publish(registry, "models/crash", "fat",
                                     sample_models[("fraud-detector", "1.1")],
                                     extra_files=[str(weights)])["digest"]),
    ]
    return targets


def assert_sound(store, name="fraud"):
    """current (if any) is one whole, loadable version; every blob matches its name."""
    st = Store(str(store))
    current = st.current(name)
    if current:
        assert st.has_version(name, current), f"current points at {current}, not staged"
        assert st.verify_version(name, current) == []
        loads_and_answers(store, name)
    assert st.verify_blobs() == []
    return current


def spawn_sync(registry, store, ref, url=None, **extra):
    args = registry.args(registries=[url or registry.url], store_dir=str(store), name="fraud",
                         ref=ref, keep=1, _ansible_check_mode=False, **extra)
    return subprocess.Popen(module_command("model_sync", args), env=module_env(),  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_kill_9_at_random_moments_never_leaves_a_mix(registry, versions, tmp_path):
    store = tmp_path / "store"
    rng = random.Random(int(os.environ.get("EDGEML_CRASH_SEED", "11")))
    started = time.monotonic()
    first = spawn_sync(registry, store, versions[2][0])
    first.communicate()
    full_run = time.monotonic() - started  # how long one whole sync of the largest takes
    killed_early = 0
    for trial in range(TRIALS):
        ref, digest = versions[trial % len(versions)]
        proc = spawn_sync(registry, store, ref)
        time.sleep(rng.uniform(0, full_run * 1.2))
        killed_early += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = assert_sound(store)
        assert before in {d for _r, d in versions}, (trial, before)
        rerun = sync(registry, store, name="fraud", ref=ref, keep=1)
        assert not rerun.get("failed"), (trial, rerun)
        assert rerun["digest"] == digest
        assert assert_sound(store) == digest
    info = run_module("model_info", {"store_dir": str(store), "verify": True})
    assert info["intact"], info["problems"]
    assert killed_early >= TRIALS // 3, "the kills came too late to test anything"


def test_two_syncs_and_a_cleanup_at_once(registry, versions, tmp_path):
    store = tmp_path / "store"
    for name in ("old", "other"):  # something for the clean-up to remove
        assert not sync(registry, store, name=name, ref=versions[0][0]).get("failed")
    procs = [spawn_sync(registry, store, versions[2][0]),
             subprocess.Popen(module_command("model_sync", registry.args(  # pylint: disable=consider-using-with
                 registries=[registry.url], store_dir=str(store), name="other",
                 ref=versions[1][0], _ansible_check_mode=False)),
                 env=module_env(), stdout=subprocess.PIPE, text=True),
             subprocess.Popen(module_command("model_sync", {  # pylint: disable=consider-using-with
                 "store_dir": str(store), "name": "old", "state": "absent"}),
                 env=module_env(), stdout=subprocess.PIPE, text=True)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    st = Store(str(store))
    assert st.current("fraud") == versions[2][1]
    assert st.current("other") == versions[1][1]
    assert not os.path.exists(store / "old")
    for name in ("fraud", "other"):
        assert_sound(store, name)


def test_a_second_run_waits_for_the_lock_then_fails_clearly(registry, versions, tmp_path):
    store = tmp_path / "store"
    assert not sync(registry, store, name="fraud", ref=versions[0][0]).get("failed")
    link = FlakyLink(registry.port, rate=2 << 20)  # the fat version takes ~4 s through it
    try:
        slow = spawn_sync(registry, store, versions[2][0], url=link.url)
        deadline = time.monotonic() + 10
        while not list((store / "blobs" / "sha256").glob("*.partial")):
            assert time.monotonic() < deadline, "the slow sync never started downloading"
            time.sleep(0.02)
        waited = time.monotonic()
        busy = sync(registry, store, name="fraud", ref=versions[1][0], lock_timeout=1)
        assert time.monotonic() - waited >= 1
        assert busy["failed"] and "locked by another run" in busy["msg"], busy
        assert "Nothing was changed" in busy["msg"]
        slow.communicate(timeout=120)
        assert slow.returncode == 0
    finally:
        link.close()
    assert assert_sound(store) == versions[2][1]


def test_a_zero_length_blob_after_a_power_cut_is_fetched_again(registry, versions, tmp_path):
    store = tmp_path / "store"
    ref, digest = versions[0]
    assert not sync(registry, store, name="fraud", ref=ref).get("failed")
    blobs = store / "blobs" / "sha256"
    victim = max(blobs.iterdir(), key=lambda p: p.stat().st_size)  # the model.onnx blob
    # What a power cut without fsync leaves: the verified name on zero bytes (same inode as the
    # version's file, which is a hard link to it).
    os.truncate(victim, 0)
    assert Store(str(store)).verify_blobs()  # it really is broken now
    result = sync(registry, store, name="fraud", ref=ref)
    assert not result.get("failed"), result
    assert result["changed"] and result["bytes_downloaded"] > 0
    assert assert_sound(store) == digest
    assert Path(victim).stat().st_size > 0
