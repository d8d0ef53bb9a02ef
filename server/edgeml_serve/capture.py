"""Optional data capture: a reservoir sample of a served version's requests and answers, written
to disk from time to time, the directory capped in bytes. Off unless serve.yml sets capture_dir.

What is captured is what clients send: it may be personal data. Files are created at most 0640
in directories 0750 (the service's user and group), never world-readable, and the oldest files are
deleted once the directory holds more than capture_max_bytes. See the collection's
docs/monitoring.md before turning it on.

Memory is bounded: at most capture_samples lines of at most capture_max_sample_bytes each per
version between two flushes. A request is encoded only when the reservoir keeps it (with
probability samples / requests seen), so a busy server pays for very few of them.
"""

import json
import logging
import os
import random
import stat
import time

LOG = logging.getLogger("edgeml_serve")
SUFFIX = ".jsonl"


class Reservoir:
    """Algorithm R over the requests of one period: every request seen is equally likely kept."""

    def __init__(self, samples, max_sample_bytes, rng=None):
        self.samples, self.max_sample_bytes = samples, max_sample_bytes
        self.rng = rng or random.Random()
        self.kept, self.seen, self.too_large = [], 0, 0

    def offer(self, inputs, outputs):
        self.seen += 1
        if len(self.kept) < self.samples:
            slot = len(self.kept)
        else:
            slot = self.rng.randrange(self.seen)
            if slot >= self.samples:
                return
        line = json.dumps({"at": round(time.time(), 3),
                           "inputs": {k: v.tolist() for k, v in inputs.items()},
                           "outputs": {k: v.tolist() for k, v in outputs.items() if hasattr(v, "tolist")}},
                          separators=(",", ":"), allow_nan=True).encode() + b"\n"
        if len(line) > self.max_sample_bytes:
            self.too_large += 1
            return
        if slot == len(self.kept):
            self.kept.append(line)
        else:
            self.kept[slot] = line

    def drain(self):
        """(lines, requests seen, too large) of the period, and a new period begins."""
        out = (self.kept, self.seen, self.too_large)
        self.kept, self.seen, self.too_large = [], 0, 0
        return out


def _safe_dir(path):
    """Make path (and parents under the capture root) 0750; refuse a link or another's directory."""
    os.makedirs(path, mode=0o750, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise OSError(f"{path} is not a directory of this user (a link, or planted)")


class CaptureWriter:
    """Writes each period's sample as one file: <dir>/<model>/<version hex>/<time>.jsonl."""

    def __init__(self, directory, max_bytes):
        self.directory, self.max_bytes = directory, max_bytes

    def write(self, model, version, lines):
        if not lines:
            return None
        hexdigest = version.split(":", 1)[-1]
        target = os.path.join(self.directory, model, hexdigest)
        _safe_dir(self.directory)
        _safe_dir(os.path.join(self.directory, model))
        _safe_dir(target)
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        tmp = os.path.join(target, f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            with os.fdopen(fd, "wb") as handle:
                for line in lines:
                    handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            path = os.path.join(target, name + SUFFIX)
            os.rename(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.trim()
        return path

    def files(self):
        """(mtime, size, path) of every capture file, links and other users' files left out."""
        found = []
        for root, dirs, names in os.walk(self.directory, followlinks=False):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
            for name in names:
                if not name.endswith(SUFFIX):
                    continue
                path = os.path.join(root, name)
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                    found.append((info.st_mtime, info.st_size, path))
        return sorted(found)

    def trim(self):
        """Delete the oldest files until the directory holds at most max_bytes."""
        files = self.files()
        total = sum(size for _mtime, size, _path in files)
        for _mtime, size, path in files:
            if total <= self.max_bytes:
                break
            os.unlink(path)
            total -= size
        return total
