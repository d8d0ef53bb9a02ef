"""Run a collection module as Ansible runs it on a host: a Python process fed its arguments."""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Argument files live as long as the test session (a Popen'd module may still read its file).
ARGS_DIR = tempfile.mkdtemp(prefix="edgeml-args-")
atexit.register(shutil.rmtree, ARGS_DIR, ignore_errors=True)


def module_command(name, args):
    handle, path = tempfile.mkstemp(suffix=".json", dir=ARGS_DIR)
    with os.fdopen(handle, "w") as out:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, out)
    return [sys.executable, "-m", f"ansible_collections.edgeml.fleet.plugins.modules.{name}", path]


def module_env():
    return dict(os.environ, PYTHONPATH=str(ROOT / ".collections"))


def run_module(name, args, check_mode=False, diff=False):
    args = dict({"_ansible_check_mode": check_mode, "_ansible_diff": diff}, **args)
    proc = subprocess.run(module_command(name, args), env=module_env(), capture_output=True,
                          text=True, check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"{name} printed no JSON: {proc.stdout}\n{proc.stderr}") from None
    return result
