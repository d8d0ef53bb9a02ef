"""runtime_facts on faked device files, /proc and nvidia-smi (no GPU here)."""

import sys

import pytest

from module_process import run_module


def run(args):
    return run_module("runtime_facts", args, args.pop("_dir"))


@pytest.fixture
def sysroot(tmp_path):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "etc").mkdir()
    (root / "proc/meminfo").write_text("MemTotal:       8000000 kB\nMemAvailable:   4096000 kB\n")
    (root / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f\n")
    return root


def facts(tmp_path, root, **extra):
    result = run(dict({"_dir": str(tmp_path), "sysroot": str(root), "store_dir": str(tmp_path / "x/y"),
                       "venv": str(tmp_path / "novenv"), "nvidia_smi": str(tmp_path / "no-smi")}, **extra))
    assert not result.get("failed"), result
    return result["ansible_facts"]["edgeml_runtime"]


def test_plain_cpu_host(tmp_path, sysroot):
    found = facts(tmp_path, sysroot)
    assert found["cpu_flags"] == ["avx", "avx2", "avx512f", "fma", "sse4_2"]
    assert found["memory_mb"] == 7812 and found["memory_available_mb"] == 4000
    assert found["disk_measured_at"] == str(tmp_path)
    assert found["accelerators"]["kind"] == "none"
    assert found["onnxruntime"] == {"installed": False, "version": None, "providers": []}


def test_nvidia_device_nodes_and_nvidia_smi(tmp_path, sysroot):
    (sysroot / "dev/nvidia0").touch()
    (sysroot / "dev/nvidiactl").touch()  # not a GPU
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA A2, 15356, 550.54.15'\n")
    smi.chmod(0o755)
    found = facts(tmp_path, sysroot, nvidia_smi=str(smi))
    assert found["accelerators"]["nvidia"] == {
        "present": True, "devices": ["nvidia0"],
        "gpus": [{"name": "NVIDIA A2", "memory_mb": 15356, "driver": "550.54.15"}]}
    assert found["accelerators"]["kind"] == "nvidia"


def test_jetson(tmp_path, sysroot):
    (sysroot / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, GCID: 33958178\n")
    (sysroot / "proc/cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp\n")
    found = facts(tmp_path, sysroot)
    assert found["accelerators"]["jetson"]["release"].startswith("# R35")
    assert found["accelerators"]["kind"] == "nvidia"
    assert "neon" in found["cpu_flags"] and "asimddp" in found["cpu_flags"]


def test_intel_gpu_by_vendor(tmp_path, sysroot):
    (sysroot / "dev/dri").mkdir()
    for node, vendor in (("renderD128", "0x8086"), ("renderD129", "0x10de")):
        (sysroot / "dev/dri" / node).touch()
        (sysroot / "sys/class/drm" / node / "device").mkdir(parents=True)
        (sysroot / "sys/class/drm" / node / "device/vendor").write_text(vendor + "\n")
    found = facts(tmp_path, sysroot)
    assert found["accelerators"]["intel_gpu"] == {"present": True, "render_nodes": ["renderD128"]}
    assert found["accelerators"]["kind"] == "intel"


def test_onnxruntime_from_a_venv(tmp_path, sysroot):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin/python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")  # this one has onnxruntime
    python.chmod(0o755)
    found = facts(tmp_path, sysroot, venv=str(venv))
    assert found["onnxruntime"]["installed"] is True
    assert "CPUExecutionProvider" in found["onnxruntime"]["providers"]
