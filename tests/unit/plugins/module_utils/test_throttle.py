"""The download rate limiter, on a fake clock: the cap holds over any chunk sizes."""

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.edgeml.fleet.plugins.module_utils._throttle import RateLimiter, limiter


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds


def make(rate, burst=None):
    clock = FakeClock()
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep), clock


def test_a_burst_passes_then_the_rate_holds():
    bucket, clock = make(1000, burst=500)
    bucket.take(500)
    assert clock.slept == 0
    bucket.take(1000)
    assert clock.slept == pytest.approx(1.0)
    bucket.take(250)
    assert clock.slept == pytest.approx(1.25)


def test_idle_time_refills_only_up_to_the_burst():
    bucket, clock = make(1000, burst=500)
    clock.now += 3600
    bucket.take(2500)
    assert clock.slept == pytest.approx(2.0)  # 500 from the bucket, 2000 at 1000/s


def test_no_cap():
    assert limiter(0) is None
    assert limiter(10).rate == 10
    with pytest.raises(ValueError, match="more than 0"):
        RateLimiter(0)


@settings(max_examples=300, deadline=None)
@given(rate=st.integers(1, 50 << 20), burst=st.integers(1, 4 << 20),
       steps=st.lists(st.tuples(st.integers(0, 8 << 20), st.floats(0, 5)), min_size=1, max_size=40))
def test_bytes_passed_never_exceed_cap_times_t_plus_burst(rate, burst, steps):
    bucket, clock = make(rate, burst)
    start, passed = clock.now, 0
    for size, idle in steps:
        clock.now += idle  # the caller did something else (wrote to disk, waited on the network)
        bucket.take(size)
        passed += size
        assert passed <= rate * (clock.now - start) + burst + 1e-6 * max(1, passed)


@settings(max_examples=100, deadline=None)
@given(rate=st.integers(1000, 10 << 20), sizes=st.lists(st.integers(1, 4 << 20), min_size=1, max_size=30))
def test_it_never_waits_longer_than_the_cap_needs(rate, sizes):
    bucket, clock = make(rate, 0)
    for size in sizes:
        bucket.take(size)
    assert clock.slept == pytest.approx(sum(sizes) / rate, rel=1e-6)


def test_threads_share_one_cap():
    """Real clock, real threads: four takers together keep the cap (a lower bound only)."""
    bucket = RateLimiter(4 << 20, burst=64 << 10)
    started = time.monotonic()
    workers = [threading.Thread(target=lambda: [bucket.take(64 << 10) for chunk in range(8)])
               for worker in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # 2 MiB in all at 4 MiB/s, 64 KiB of it the burst: at least (2 MiB - 64 KiB) / 4 MiB/s.
    assert time.monotonic() - started >= ((2 << 20) - (64 << 10)) / (4 << 20)
