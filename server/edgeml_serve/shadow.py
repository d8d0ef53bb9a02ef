"""Shadow versions: a candidate loaded beside the version in service. Each answered request is
run on the candidate too, after the answer is computed and off its path, and the two answers are
compared: the client only ever gets the serving version's answer.

A candidate runs on a thread of its own, one request at a time, with one intra-op thread; a
request that arrives while SHADOW_PENDING are already waiting is not shadowed (counted as
skipped), so a slow or stuck candidate costs the serving path no more than its own inference,
and never a queue. A very fast one (under INLINE_SECONDS) runs on the event loop right after the
answer has gone out."""

import collections
import functools
import math
import threading
import time

import numpy as np

SHADOW_PENDING = 2  # requests waiting for the candidate at most; the rest are skipped
LATENCY_WINDOW = 2048  # the latest timings kept, for the percentiles (fixed memory)
INLINE_SECONDS = 0.001  # a candidate this fast once warm runs on the event loop, after the answer
INLINE_ELEMENTS = 4096  # ... for a request of at most this many input elements (else the thread)


def agree(served, candidate, tolerance, outputs=None):
    """Whether two answers agree: labels (integers, booleans, strings) exactly, scores
    (floating point) within an absolute tolerance; the same shapes and the same kind of values
    (a label never agrees with a score). `outputs` limits the comparison to those names (None:
    every output the client got). None when there was nothing to compare (the client asked for
    none of them): such a request is not evidence either way."""
    compared = 0
    for name in outputs or served:
        if name not in served:
            continue  # the client did not ask for it
        compared += 1
        if name not in candidate:
            return False
        mine, theirs = np.asarray(served[name]), np.asarray(candidate[name])
        if mine.shape != theirs.shape or (mine.dtype.kind == "f") != (theirs.dtype.kind == "f"):
            return False
        if mine.dtype.kind == "f":
            if not np.allclose(mine.astype(np.float64), theirs.astype(np.float64),
                               rtol=0.0, atol=tolerance, equal_nan=True):
                return False
        elif mine.dtype.kind != theirs.dtype.kind and {mine.dtype.kind, theirs.dtype.kind} - set("iub"):
            return False  # a string against a number
        elif not np.array_equal(mine, theirs):
            return False
    return None if not compared else True


def percentile(values, fraction):
    """The nearest-rank percentile of values in milliseconds, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000.0, 3)


class Shadow:  # pylint: disable=too-many-instance-attributes  # one counter per figure
    """One candidate beside one serving version, and what the comparison found so far."""

    def __init__(self, candidate, serving_version, tolerance, outputs, expires_after=None, shadow_id=None):
        self.candidate = candidate  # a LoadedModel
        # Fast enough to run on the event loop: the hop to the thread would cost more than its
        # inference. A slower one there would hold up every other request for its duration.
        self.inline = candidate.warm_seconds < INLINE_SECONDS
        self.serving_version = serving_version
        self.tolerance = tolerance
        self.outputs = list(outputs or [])
        self.started = time.time()
        # on the monotonic clock: a host whose clock is set mid-judging neither ends nor
        # prolongs it
        self.expires_after = expires_after
        self.shadow_id = shadow_id
        self.expires = None if expires_after is None else time.monotonic() + expires_after
        self.lock = threading.Lock()
        self.pending = 0
        self.requests = 0  # run on the candidate and compared
        self.agreed = 0
        self.errors = 0  # the candidate failed where the serving version answered
        self.skipped = 0  # not shadowed: the candidate was behind
        self.candidate_seconds = collections.deque(maxlen=LATENCY_WINDOW)
        self.serving_seconds = collections.deque(maxlen=LATENCY_WINDOW)
        self.last_disagreement = None

    def expired(self):
        return self.expires is not None and time.monotonic() >= self.expires

    def offer(self, executor, arrays, names, served, serving_seconds):
        """Shadow one answered request, unless the candidate is behind. A candidate fast enough
        to run on the event loop (self.inline), for a request no larger than INLINE_ELEMENTS, is
        not sent to the thread (the hop would cost more than its inference): the job is
        returned, and the caller must run it once the answer is out; it takes no slot, so
        clients that are slow to read their answers cannot keep others from being shadowed.
        Otherwise it goes to executor, at most SHADOW_PENDING waiting, and None is returned.
        Never raises."""
        if self.inline and sum(a.size for a in arrays.values()) <= INLINE_ELEMENTS:
            return functools.partial(self._run, arrays, names, served, serving_seconds, False)
        with self.lock:
            if self.pending >= SHADOW_PENDING:
                self.skipped += 1
                return None
            self.pending += 1
        try:
            executor.submit(self._run, arrays, names, served, serving_seconds, True)
        except RuntimeError:  # the executor is shutting down
            with self.lock:
                self.pending -= 1
                self.skipped += 1
        return None

    def _run(self, arrays, names, served, serving_seconds, queued):
        started = time.perf_counter()
        try:
            answer = self.candidate.infer(arrays, names)
            same = agree(served, answer, self.tolerance, self.outputs)
            failed = None
        except Exception as exc:  # pylint: disable=broad-except  # the candidate's own errors
            same, failed = False, str(exc)[:200]
        took = time.perf_counter() - started
        with self.lock:
            self.pending -= queued
            if same is None:  # nothing the comparison looks at was asked for
                self.skipped += 1
                return
            self.requests += 1
            self.agreed += same
            self.errors += failed is not None
            if failed is None:
                self.candidate_seconds.append(took)
                self.serving_seconds.append(serving_seconds)
            if not same:
                self.last_disagreement = failed or "answers differ"

    def report(self, name):
        with self.lock:
            candidate, serving = list(self.candidate_seconds), list(self.serving_seconds)
            figures = {"requests": self.requests, "agreed": self.agreed, "errors": self.errors,
                       "skipped": self.skipped, "last_disagreement": self.last_disagreement}
        return {"model": name, "serving_version": self.serving_version,
                "candidate_version": self.candidate.version, "since": self.started,
                "tolerance": self.tolerance, "outputs": self.outputs, "id": self.shadow_id, **figures,
                "expires_in": None if self.expires is None else round(max(0.0, self.expires - time.monotonic()), 3),
                "agreement": round(figures["agreed"] / figures["requests"], 6)
                if figures["requests"] else None,
                "candidate_latency_ms": {"p50": percentile(candidate, 0.5),
                                         "p95": percentile(candidate, 0.95)},
                "serving_latency_ms": {"p50": percentile(serving, 0.5),
                                       "p95": percentile(serving, 0.95)},
                "providers": list(self.candidate.providers)}
