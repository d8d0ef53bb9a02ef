# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: a token bucket that caps the bytes per second of downloads."""

from __future__ import annotations

import threading
import time

BURST = 256 << 10  # bytes that may pass at once; small, so a short transfer keeps the cap too


class RateLimiter:
    """Token bucket: take(n) returns once n more bytes may pass.

    The bucket holds at most burst tokens and fills at rate per second. take(n) always spends
    n, possibly going into debt, then sleeps until the debt is paid; so whatever the chunk
    sizes, the bytes whose take() has returned by time t never exceed burst + rate * t.
    One limiter may be shared by threads (one lock; a sleeping thread holds it, so takers
    queue in order and the cap holds for their sum).
    """

    def __init__(self, rate, burst=None, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError(f"rate must be more than 0 bytes per second, got {rate}")
        self.rate = float(rate)
        self.burst = float(BURST if burst is None else burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, count):
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
            self._last = now
            self._tokens -= count
            if self._tokens < 0:  # sleep off the debt; a sleep that overruns refills the next take
                wait = -self._tokens / self.rate
                self._sleep(wait)
                self._tokens, self._last = 0.0, now + wait


def limiter(bytes_per_second):
    """A RateLimiter for a cap of bytes_per_second, None for 0 (no cap)."""
    return RateLimiter(bytes_per_second) if bytes_per_second else None
