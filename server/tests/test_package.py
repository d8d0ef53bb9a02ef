"""The package as the role ships it: a wheel built offline from server/, carrying every module
and exactly the pins pyproject.toml holds."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from edgeml_serve import protocol

SERVER = Path(__file__).resolve().parents[1]
MODULES = ("__init__", "__main__", "app", "config", "connections", "metrics", "models", "protocol")


def test_the_wheel_builds_offline_with_every_module_and_pin(tmp_path):
    source = tmp_path / "server"
    shutil.copytree(SERVER, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True)
    project = tomllib.loads((SERVER / "pyproject.toml").read_text())["project"]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name == f"edgeml_serve-{project['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"edgeml_serve-{project['version']}.dist-info/METADATA").decode()
    assert {f"edgeml_serve/{module}.py" for module in MODULES} <= names
    requires = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    extras = {f'{pin}; extra == "{extra}"'
              for extra, pins in project["optional-dependencies"].items() for pin in pins}
    pinned = set(project["dependencies"]) | extras
    assert requires == pinned
    assert all("==" in pin for pin in pinned)


def test_the_onnx_to_v2_table_covers_strings_and_only_known_datatypes():
    """model_verify checks a model's signature with this table, from the runtime's venv."""
    assert protocol.ONNX_TO_V2["tensor(string)"] == "BYTES"
    assert set(protocol.ONNX_TO_V2.values()) <= set(protocol.V2_TO_NUMPY)
