"""Loaded models: sessions made, warmed up and swapped in whole, so requests never see a mix."""

import collections
import json
import logging
import os
import threading
import time

import numpy as np
import onnxruntime as ort

from .protocol import ONNX_TO_V2, V2_TO_NUMPY
from .capture import Reservoir
from .shadow import Shadow
from .stats import VersionStats

LOG = logging.getLogger("edgeml_serve")
PREFERRED = ("CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider")


def choose_providers(wanted, available=None):
    """The execution providers to use: the best the host has, always ending with CPU."""
    available = available if available is not None else ort.get_available_providers()
    if not wanted or wanted == ["auto"]:
        chosen = [p for p in PREFERRED if p in available]
    else:
        chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _signature(values):
    return [{"name": v.name, "datatype": ONNX_TO_V2.get(v.type, v.type),
             "shape": [d if isinstance(d, int) else -1 for d in v.shape]} for v in values]


INLINE_SECONDS = 0.01


def physical_cores():
    """Cores (not hyper-threads) this process may run on, from sysfs: the intra-op thread count
    onnxruntime picks by default, which it cannot work out itself when /proc/cpuinfo is hidden
    (the unit's ProcSubset=pid) — it would fall back to one thread."""
    cores = set()
    for cpu in os.sched_getaffinity(0):
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list",
                      encoding="ascii") as handle:
                cores.add(handle.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


class LoadedModel:
    """One version of one model: an onnxruntime session and what the protocol reports."""

    def __init__(self, name, directory, filename, providers, intra_op_threads=0, statistics=True,  # pylint: disable=too-many-arguments
                 capture=None, spinning=True):
        self.name = name
        self.real_dir = os.path.realpath(directory)
        # The store names version directories by manifest digest: that is the served version.
        base = os.path.basename(self.real_dir)
        self.version = f"sha256:{base}" if len(base) == 64 else base
        started = time.monotonic()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads or physical_cores()
        if not spinning:  # idle intra-op threads sleep instead of burning a core (intra_op_spinning)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(os.path.join(self.real_dir, filename), options,
                                            providers=providers)
        self.inputs = _signature(self.session.get_inputs())
        self.outputs = _signature(self.session.get_outputs())
        self.default_outputs = ([o["name"] for o in self.outputs if o["datatype"] in V2_TO_NUMPY]
                                or [o["name"] for o in self.outputs])
        meta_path = os.path.join(self.real_dir, "edgeml-model.json")
        self.meta = {}
        if os.path.exists(meta_path):
            with open(meta_path, encoding="utf-8") as handle:
                self.meta = json.load(handle)
        self.warm_up()
        self.load_seconds = time.monotonic() - started
        # A model that answers within INLINE_SECONDS once warm runs on the event loop: on a few
        # cores the hop to a worker thread costs more than it saves (bench/inference.py). Slower
        # ones run on the worker threads, so health probes and other models keep answering.
        warm = time.perf_counter()
        self.warm_up()
        self.warm_seconds = time.perf_counter() - warm
        self.inline = self.warm_seconds < INLINE_SECONDS
        self.providers = self.session.get_providers()
        # Made after the warm-up, which is not traffic; kept while this version serves. A
        # reference the statistics cannot use never stops the version from serving.
        self.stats = None
        if statistics:
            try:
                self.stats = VersionStats(self.version, self.inputs, self.meta.get("reference"))
            except Exception:  # pylint: disable=broad-except  # the metadata's reference entry
                LOG.exception("model %s: its reference statistics are unusable; summarising "
                              "without them", name)
                self.stats = VersionStats(self.version, self.inputs, None)
        # capture: (samples, max_sample_bytes), or None when capture is off.
        self.capture = Reservoir(*capture) if capture else None

    def warm_up(self):
        """Run once before serving: the golden inputs if there are any, else zeros."""
        golden = (self.meta.get("golden") or [{}])[0].get("inputs")
        feeds = {}
        for spec in self.inputs:
            dtype = V2_TO_NUMPY.get(spec["datatype"], np.float32)
            if golden and spec["name"] in golden:
                feeds[spec["name"]] = np.asarray(golden[spec["name"]], dtype=dtype)
            else:  # zeros, or empty strings for a BYTES input
                feeds[spec["name"]] = np.full([d if d > 0 else 1 for d in spec["shape"]],
                                              "" if dtype is np.object_ else 0, dtype)
        self.session.run(None, feeds)

    def infer(self, arrays, names=None):
        # By default the outputs the v2 protocol can carry (not sequences or maps); named ones
        # it cannot are refused when the answer is encoded, saying which.
        wanted = names or self.default_outputs
        unknown = set(wanted) - {o["name"] for o in self.outputs}
        if unknown:
            raise KeyError(f"unknown outputs {sorted(unknown)}")
        return dict(zip(wanted, self.session.run(wanted, arrays)))

    def metadata(self):
        # execution_providers: what ONNX Runtime actually runs this version on, best first (an
        # accelerator build that fell back to CPU lists only CPUExecutionProvider): not part of
        # the v2 protocol, an addition the health gate checks.
        return {"name": self.name, "versions": [self.version], "platform": "onnxruntime_onnx",
                "inputs": self.inputs, "outputs": self.outputs,
                "execution_providers": list(self.providers)}


class ModelSet:
    """The models being served. load() swaps each model in whole or keeps the old one."""

    def __init__(self, metrics, providers, intra_op_threads=0, statistics=True, capture=None,  # pylint: disable=too-many-arguments
                 spinning=True):
        self.metrics = metrics
        self.spinning = spinning
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self.statistics = statistics
        self.capture = capture  # (samples, max_sample_bytes) or None
        # versions replaced or unloaded whose capture is still to be written (appended by load()
        # in a worker thread, taken by the event loop: a deque's append and popleft are atomic)
        self.retired = collections.deque()
        self._models = {}
        self._lock = threading.Lock()
        self.failures = {}  # model -> last load error
        self.shadows = {}  # model -> Shadow: its candidate beside the version in service
        self.shadow_failures = {}  # model -> why its configured candidate is not loaded
        self.shadow_expired = {}  # model -> the settings of a shadow that ran its time

    def get(self, name):
        return self._models.get(name)

    def names(self):
        return sorted(self._models)

    def loaded(self):
        return [self._models[name] for name in sorted(self._models)]

    def ready(self, configured):
        return all(m.name in self._models for m in configured)

    def load(self, configured):
        """(Re)load what the configuration names; runs in a worker thread, not the event loop."""
        with self._lock:
            wanted = {m.name for m in configured}
            for model in configured:
                old = self._models.get(model.name)
                real = os.path.realpath(model.path)
                if old and old.real_dir == real:
                    continue  # same version: nothing to do
                try:
                    new = LoadedModel(model.name, model.path, model.file, self.providers,
                                      self.intra_op_threads, self.statistics, self.capture, self.spinning)
                except Exception as exc:  # pylint: disable=broad-except  # any load error
                    self.failures[model.name] = str(exc)
                    self.metrics.load_failed(model.name)
                    LOG.error("model %s: loading %s failed, %s: %s", model.name, real,
                              "keeping the version in service" if old else "not serving it",
                              exc)
                    continue
                self._models[model.name] = new  # one reference swap: in-flight requests keep old
                if old is not None:
                    self.retired.append(old)
                self.failures.pop(model.name, None)
                self.metrics.loaded(model.name, new.version, new.load_seconds)
                LOG.info("model %s: serving %s (%s, loaded in %.3f s)", model.name, new.version,
                         ",".join(new.providers), new.load_seconds)
            for name in set(self._models) - wanted:
                self.retired.append(self._models.pop(name))
                LOG.info("model %s: no longer configured, unloaded", name)
            for model in configured:
                self._load_shadow(model)
            for name in set(self.shadows) - {m.name for m in configured if m.shadow}:
                LOG.info("model %s: shadow %s removed", name, self.shadows.pop(name).candidate.version)
            for name in set(self.shadow_failures) - {m.name for m in configured if m.shadow}:
                del self.shadow_failures[name]
            for name in set(self.shadow_expired) - {m.name for m in configured if m.shadow}:
                del self.shadow_expired[name]

    def expire_shadow(self, name):
        """Drop a shadow that ran its time (shadow_expires_after); its candidate is unloaded once
        the jobs still running on it end. Reading the same configuration again does not load it
        again; a new one (or a restart) does."""
        # Called on the event loop: never wait there for a reload in a worker thread; the next
        # request tries again.
        if not self._lock.acquire(blocking=False):  # pylint: disable=consider-using-with
            return
        try:
            shadow = self.shadows.get(name)
            if shadow is None or not shadow.expired():
                return
            del self.shadows[name]
            self.shadow_expired[name] = (shadow.candidate.real_dir, (shadow.serving_version, shadow.tolerance,
                                                                     shadow.outputs, shadow.expires_after,
                                                                     shadow.shadow_id))
            self.shadow_failures[name] = f"expired {shadow.expires_after:g} s after it was loaded"
        finally:
            self._lock.release()
        LOG.warning("model %s: shadow %s expired after %g s and was dropped", name, shadow.candidate.version,
                    shadow.expires_after)

    def _load_shadow(self, model):
        """Load (or keep) the candidate a model's configuration names beside it. A new serving
        version or new comparison settings start the comparison afresh; a candidate that does
        not load is reported on the shadow route, and the serving version serves on."""
        serving = self._models.get(model.name)
        old = self.shadows.get(model.name)
        if not model.shadow or serving is None:
            return
        real = os.path.realpath(model.shadow)
        settings = (serving.version, model.shadow_tolerance, list(model.shadow_outputs),
                    model.shadow_expires_after, model.shadow_id)
        if old and old.candidate.real_dir == real \
                and (old.serving_version, old.tolerance, old.outputs, old.expires_after, old.shadow_id) == settings:
            return
        if self.shadow_expired.get(model.name) == (real, settings):
            return  # it ran its time; the same configuration read again does not start it anew
        try:
            # One intra-op thread: a candidate's thread pool would spin on the cores the
            # serving version needs (bench/serve_stats.py); it runs off the answer's path anyway.
            candidate = old.candidate if old and old.candidate.real_dir == real else LoadedModel(
                model.name, model.shadow, model.file, self.providers, 1, statistics=False)
        except Exception as exc:  # pylint: disable=broad-except  # any load error
            self.shadows.pop(model.name, None)
            self.shadow_failures[model.name] = f"loading {real} failed: {exc}"
            LOG.error("model %s: shadow %s not loaded: %s", model.name, real, exc)
            return
        self.shadows[model.name] = Shadow(candidate, serving.version, model.shadow_tolerance,
                                          model.shadow_outputs, model.shadow_expires_after, model.shadow_id)
        self.shadow_failures.pop(model.name, None)
        self.shadow_expired.pop(model.name, None)
        LOG.info("model %s: shadow %s beside %s (%s)", model.name, candidate.version,
                 serving.version, ",".join(candidate.providers))
