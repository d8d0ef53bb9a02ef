"""Run one of the collection's modules as Ansible does on a host: a separate Python process
given its arguments in a JSON file. Returns the module's result."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_module(name, args, directory):
    path = Path(directory) / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, "-m", f"ansible_collections.edgeml.fleet.plugins.modules.{name}",
                           str(path)], env=dict(os.environ, PYTHONPATH=str(ROOT / ".collections")),
                          capture_output=True, text=True, check=False)
    return json.loads(proc.stdout)
