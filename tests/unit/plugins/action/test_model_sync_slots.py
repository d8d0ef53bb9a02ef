"""The action plugin's per-site pull slots: real lock files, real processes."""

import multiprocessing
import os
import time

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.edgeml.fleet.plugins.action import model_sync
from ansible_collections.edgeml.fleet.plugins.action.model_sync import pull_slot, pulls_from_core


@pytest.fixture(autouse=True)
def own_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(model_sync.tempfile, "tempdir", None)  # re-read TMPDIR


def test_pulls_from_core():
    core = {"url": "https://core", "kind": "core"}
    assert pulls_from_core([core]) and pulls_from_core([]) and pulls_from_core(None)
    assert pulls_from_core(["https://core"])
    assert not pulls_from_core([{"url": "https://m", "kind": "mirror"}, core])


def test_slots_are_taken_in_turn_and_given_back():
    with pull_slot("site-a", 2, 5) as first, pull_slot("site-a", 2, 5) as second:
        assert (first["slot"], second["slot"]) == (1, 2)
        assert first["limit"] == 2 and first["group"] == "site-a"
        with pull_slot("site-b", 2, 5) as other:  # another site has its own slots
            assert other["slot"] == 1
        with pytest.raises(AnsibleActionFail, match="no free pull slot for site 'site-a'"):
            with pull_slot("site-a", 2, 0.3):
                pass
    with pull_slot("site-a", 2, 5) as again:
        assert again["slot"] == 1 and again["waited"] < 5


def _hold(tmpdir, ready, release):
    os.environ["TMPDIR"] = tmpdir
    model_sync.tempfile.tempdir = None
    with pull_slot("site-a", 1, 5):
        ready.set()
        release.wait(10)
        os._exit(0)  # dies holding the slot: the kernel releases the lock


def test_a_dead_holder_frees_its_slot(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(AnsibleActionFail, match="max_parallel_pulls"):
        with pull_slot("site-a", 1, 0.3):
            pass
    release.set()
    holder.join(10)
    started = time.monotonic()
    with pull_slot("site-a", 1, 5) as slot:
        assert slot["slot"] == 1
    assert time.monotonic() - started < 5
