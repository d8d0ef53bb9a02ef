# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what runtime_facts reports about an edge host.

Decided here: which CPU flags matter for inference, how memory, free disk (at the store, or
the nearest existing parent), accelerators (NVIDIA, Jetson, Intel GPU) and the installed ONNX
Runtime and service state are read, all from a sysroot so tests can fake the host.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil


INTERESTING_FLAGS = ("avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "fma",
                     "f16c", "sse4_2", "neon", "asimd", "asimddp", "sve")


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def cpu_facts(root):
    text = _read(os.path.join(root, "proc/cpuinfo")) or ""
    flags = set()
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if "asimd" in flags:
        flags.add("neon")  # aarch64 calls NEON Advanced SIMD
    return sorted(f for f in flags if f in INTERESTING_FLAGS)


def memory_facts(root):
    values = {}
    for line in (_read(os.path.join(root, "proc/meminfo")) or "").splitlines():
        key, _sep, value = line.partition(":")
        if value.strip().endswith("kB"):
            values[key] = int(value.split()[0]) // 1024
    return values.get("MemTotal"), values.get("MemAvailable")


def disk_facts(store):
    path = store
    while not os.path.isdir(path):
        path = os.path.dirname(path) or "/"
    return shutil.disk_usage(path).free // 1048576, path


def nvidia_facts(module, root, command):
    devices = sorted(os.path.basename(d) for d in glob.glob(os.path.join(root, "dev/nvidia[0-9]*")))
    gpus = []
    binary = command if os.path.isabs(command) else module.get_bin_path(command)
    if binary and os.path.exists(binary):
        rc, out, _err = module.run_command(
            [binary, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"])
        if rc == 0:
            for line in out.strip().splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 3:
                    gpus.append({"name": parts[0], "memory_mb": int(float(parts[1])),
                                 "driver": parts[2]})
    return {"present": bool(devices or gpus), "devices": devices, "gpus": gpus}


def intel_gpu_facts(root):
    nodes = []
    for node in sorted(glob.glob(os.path.join(root, "dev/dri/renderD*"))):
        name = os.path.basename(node)
        vendor = (_read(os.path.join(root, "sys/class/drm", name, "device/vendor")) or "").strip()
        if vendor in ("", "0x8086"):  # unknown vendor: count it, the device node is there
            nodes.append(name)
    return {"present": bool(nodes), "render_nodes": nodes}


def runtime_facts(module, venv):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        return {"installed": False, "version": None, "providers": []}
    rc, out, err = module.run_command([python, "-c", "import json, onnxruntime as o; print(json.dumps("
                                       "{'version': o.__version__, 'providers': o.get_available_providers()}))"])
    if rc != 0:
        return {"installed": False, "version": None, "providers": [], "error": err.strip()[-500:]}
    data = json.loads(out)
    data["installed"] = True
    return data


def service_facts(module, name):
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        return {"name": name, "active": "unknown", "sub": "unknown", "enabled": "unknown"}
    rc, out, _err = module.run_command([systemctl, "show", name, "--property=ActiveState,SubState,UnitFileState"])
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}
    return {"name": name, "active": props.get("ActiveState", "unknown"),
            "sub": props.get("SubState", "unknown"), "enabled": props.get("UnitFileState") or "not-found"}


def run(module):
    """runtime_facts' whole run: gather the facts and exit with ansible_facts.edgeml_runtime."""
    root = module.params["sysroot"]
    memory, available = memory_facts(root)
    free_mb, measured_at = disk_facts(module.params["store_dir"])
    nvidia = nvidia_facts(module, root, module.params["nvidia_smi"])
    tegra = _read(os.path.join(root, "etc/nv_tegra_release"))
    jetson = {"present": tegra is not None, "release": tegra.strip().splitlines()[0] if tegra else None}
    intel = intel_gpu_facts(root)
    kind = "nvidia" if nvidia["present"] or jetson["present"] else "intel" if intel["present"] else "none"
    facts = {
        "arch": platform.machine(),
        "cpu_flags": cpu_facts(root),
        "cores": os.cpu_count(),
        "memory_mb": memory,
        "memory_available_mb": available,
        "free_disk_mb": free_mb,
        "disk_measured_at": measured_at,
        "python": platform.python_version(),
        "accelerators": {"nvidia": nvidia, "jetson": jetson, "intel_gpu": intel, "kind": kind},
        "onnxruntime": runtime_facts(module, module.params["venv"]),
        "service": service_facts(module, module.params["service"]),
    }
    module.exit_json(changed=False, ansible_facts={"edgeml_runtime": facts})
