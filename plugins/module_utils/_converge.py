# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the converge stamp, and the live state it is compared with.

Decided here: what a full walk of edgeml.fleet.site records on a host when it left the host
converged (host_stamp), and what the fast path reads back in one probe (host_probe): the files
and directories the roles manage, the runtime's installed packages, the service account, the
service, each model's current version and its health. The controller compares the probe with
the desired state (plugins/filter/converge_verdict.py); see docs/performance.md, "Fleet scale".

The stamp holds hashes and settings, never a secret: the health probe reads the server's token
from the token file the stamp names.
"""

from __future__ import annotations

import glob
import grp
import hashlib
import json
import os
import platform
import pwd
import stat
import time

from ansible_collections.edgeml.fleet.plugins.module_utils._golden import GoldenError
from ansible_collections.edgeml.fleet.plugins.module_utils._health import probe as health_probe
from ansible_collections.edgeml.fleet.plugins.module_utils._store import (
    METADATA, Store, StoreError, _read_regular)
from ansible_collections.edgeml.fleet.plugins.module_utils._v2client import ProbeError

STAMP_VERSION = 1
MAX_STAMP_BYTES = 1 << 20  # a stamp is a few KiB; golden cases are small
AWAITING = "awaiting offline bundle"  # a disconnected host's model state: nothing a run can change
MAX_WATCHED_BYTES = 16 << 20  # configuration, unit and key files are a few KiB
PROBE_TIMEOUT = 10.0  # seconds: a converged host answers at once; a slow one gets the full walk


def file_state(path):
    """A regular file's sha256, mode and owner; 'absent', or what else is there.

    Opened without following a link and without blocking on a FIFO, and hashed from that open
    file: what was checked is what is hashed. The files watched are small; a huge one is drift.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "absent"
    except OSError:
        return "not a regular file"
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > MAX_WATCHED_BYTES:
            return f"{info.st_size} bytes"
        digest = hashlib.sha256(handle.read(MAX_WATCHED_BYTES + 1)).hexdigest()
    return f"sha256:{digest} {stat.S_IMODE(info.st_mode):04o} {info.st_uid}:{info.st_gid}"


def dir_state(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    return f"{stat.S_IMODE(info.st_mode):04o} {info.st_uid}:{info.st_gid}"


def packages_state(venv):
    """One hash over the names and versions of every package in the venv (dist-info names)."""
    names = sorted(os.path.basename(p) for p in glob.glob(
        os.path.join(glob.escape(venv), "lib", "python3*", "site-packages", "*.dist-info")))
    if not names:
        return "absent"
    return "sha256:" + hashlib.sha256("\n".join(names).encode()).hexdigest()


def package_version(venv, package):
    found = glob.glob(os.path.join(glob.escape(venv), "lib", "python3*", "site-packages",
                                   f"{package}-*.dist-info"))
    return os.path.basename(found[0])[len(package) + 1:-len(".dist-info")] if len(found) == 1 else None


def account_state(user, group):
    try:
        entry = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return "absent"
    return f"{entry.pw_uid}:{gid} {entry.pw_shell}"


def service_state(module, unit):
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        return {"active": "unknown", "enabled": "unknown"}
    rc, out, _err = module.run_command([systemctl, "show", unit, "--property=ActiveState,UnitFileState"])
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}
    return {"active": props.get("ActiveState", "unknown"), "enabled": props.get("UnitFileState") or "not-found"}


def watched(spec):
    """The live state of what a stamp watches: {key: state}; spec as host_stamp takes it."""
    state = {}
    for path in spec.get("files") or []:
        state["file " + path] = file_state(path)
    for path in spec.get("dirs") or []:
        state["directory " + path] = dir_state(path)
    if spec.get("venv"):
        state["packages in " + spec["venv"]] = packages_state(spec["venv"])
    if spec.get("user"):
        state[f"account {spec['user']}:{spec.get('group') or spec['user']}"] = \
            account_state(spec["user"], spec.get("group") or spec["user"])
    return state


def current_versions(store_dir, names):
    """{model: current digest or None}; a store that planted links answers None for that model.

    As the full walk's sync sees it: the link names versions/<hex> and that version is intact
    (every file of its record there, at its size). Otherwise the digest is marked not intact.
    """
    store = Store(store_dir)
    found = {}
    for name in names:
        try:
            digest = store.current(name)
            intact = digest is not None and store.version_intact(name, digest) and os.readlink(
                os.path.join(store.model_dir(name), "current")) == os.path.join("versions", digest[len("sha256:"):])
        except (StoreError, OSError, ValueError):
            digest, intact = None, False
        found[name] = digest if intact or digest is None else f"{digest} (not intact)"
    return found


def read_stamp(path):
    """The stamp at path as a dict, or None when there is none or it is not a sound one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        # root's own file only: anyone else who could write it could declare a host converged
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_STAMP_BYTES + 1)
    finally:
        os.close(fd)
    try:
        stamp = json.loads(data) if len(data) <= MAX_STAMP_BYTES else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(stamp, dict) or stamp.get("version") != STAMP_VERSION:
        return None
    return stamp


def stamp_body(params):
    """What host_stamp writes, without the time: compared to tell whether anything changed."""
    spec = {key: params[key] for key in ("files", "dirs", "venv", "user", "group")}
    checks = {check.get("name"): check for check in params["health_checks"]}
    models = []
    for model in params["models"]:
        check = checks.get(model["name"]) or {}
        awaiting = model.get("state") == AWAITING
        models.append({"name": model["name"], "digest": model["digest"], "signer": model.get("signer"),
                       # what serves: the digest, or for a host awaiting its bundle what served then
                       "served": (model.get("served") or None) if awaiting else model["digest"],
                       "state": AWAITING if awaiting else "served", "message": model.get("message") or "",
                       "golden": check.get("acceptance"), "latency_p50_ms": check.get("latency_p50_ms"),
                       "latency_p95_ms": check.get("latency_p95_ms")})
    return {
        "version": STAMP_VERSION,
        "fingerprint": params["fingerprint"],
        "watch": spec,
        "state": watched(spec),
        "service": params["service"],
        "health": {"url": params["url"], "token_file": params["token_file"],
                   "requests": params["health_requests"], "providers": params["health_providers"]},
        "store_dir": params["store_dir"],
        "models": sorted(models, key=lambda m: m["name"]),
        "python": platform.python_version(),
    }


def new_stamp(body):
    return dict(body, recorded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _token(path):
    """The server's bearer token, read like a watched file (no link, no FIFO); None if absent."""
    data = _read_regular(path, 4096) if path else None
    return (data.decode("utf-8", "replace").strip() or None) if data else None


def model_health(stamp, model, token):
    """The health gate's checks (golden cases, latency SLO) on a served model: a report dict."""
    params = {
        "url": stamp["health"]["url"], "token": token, "model": model["name"],
        "version": model["digest"], "golden": model.get("golden"), "tolerance": None,
        "golden_file": os.path.join(stamp["store_dir"], model["name"], "current", METADATA),
        "latency_p50_ms": model.get("latency_p50_ms"), "latency_p95_ms": model.get("latency_p95_ms"),
        "requests": stamp["health"]["requests"], "timeout": PROBE_TIMEOUT,
        "request_timeout": int(PROBE_TIMEOUT), "validate_certs": True, "ca_path": None,
        "providers": stamp["health"].get("providers") or [],
    }
    result = {}
    try:
        health_probe(params, result)
    except (GoldenError, ProbeError, OSError, ValueError) as exc:
        return {"healthy": False, "problem": str(exc)[:500]}
    latency = result.get("latency") or {}
    return {"healthy": True, "p50_ms": latency.get("p50_ms"), "p95_ms": latency.get("p95_ms")}


def probe(module, path):
    """host_probe's answer: the stamp's fingerprint, drift since it, service, models, runtime."""
    stamp = read_stamp(path)
    if stamp is None:
        return {"stamp": False, "fingerprint": None, "runtime": {}, "models": {},
                "drift": [f"no converge stamp at {path}: no full run has left this host converged yet"]}
    unit = stamp.get("service") or ""
    venv = (stamp.get("watch") or {}).get("venv") or ""
    service = service_state(module, unit)
    version = package_version(venv, "onnxruntime")
    runtime = {"arch": platform.machine(), "python": platform.python_version(),
               "onnxruntime": {"installed": version is not None, "version": version},
               "service": dict(service, name=unit)}
    drift = [f"{key}: {was} when converged, {now} now"
             for key, now in watched(stamp.get("watch") or {}).items()
             if (was := (stamp.get("state") or {}).get(key)) != now]
    if stamp.get("python") != runtime["python"]:
        drift.append(f"Python {runtime['python']}, {stamp.get('python')} when converged")
    if service["active"] != "active" or service["enabled"] != "enabled":
        drift.append(f"service {unit} is {service['active']} and {service['enabled']}")
    models = {}
    names = [m["name"] for m in stamp.get("models") or []]
    current = current_versions(stamp.get("store_dir") or "", names)
    token = _token((stamp.get("health") or {}).get("token_file"))
    for model in stamp.get("models") or []:
        entry = {key: model.get(key) for key in ("digest", "served", "state", "message", "signer")}
        entry["current"] = current[model["name"]]
        if entry["current"] != model.get("served"):
            drift.append(f"model {model['name']} serves {entry['current']}, "
                         f"{model.get('served')} when converged")
        elif model.get("state") == "served" and not drift:  # a host that drifted gets the full walk: no need to time its models
            entry.update(model_health(stamp, model, token))
            if not entry["healthy"]:
                drift.append(f"model {model['name']}: {entry['problem']}")
        models[model["name"]] = entry
    return {"stamp": True, "fingerprint": stamp.get("fingerprint"), "recorded_at": stamp.get("recorded_at"),
            "runtime": runtime, "models": models, "drift": drift}
