"""Seed ansible-test's pip bootstrap cache so `ansible-test sanity --venv` works offline.

ansible-test downloads get-pip.py from a host that may be unreachable (it is in the lab and in
CI). This writes a stand-in with the same job: put the pip 24.2 wheel (from PyPI) on sys.path and
run `pip install` with the arguments ansible-test gives, minus the get-pip-only flags.
"""

import subprocess
import sys
from pathlib import Path

PIP_VERSION = "24.2"
CACHE = Path.home() / ".ansible" / "test" / "cache"
SCRIPT = CACHE / f"get_pip_{PIP_VERSION.replace('.', '_')}.py"
WHEEL = CACHE / f"pip-{PIP_VERSION}-py3-none-any.whl"

STAND_IN = f'''"""Stand-in for get-pip.py {PIP_VERSION}: runs pip from its wheel (seeded by edgeml.fleet)."""
import sys
sys.path.insert(0, {str(WHEEL)!r})
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", *args]))
'''


def main():
    CACHE.mkdir(parents=True, exist_ok=True)
    if not WHEEL.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", str(CACHE), f"pip=={PIP_VERSION}"], check=True)
    SCRIPT.write_text(STAND_IN)


if __name__ == "__main__":
    main()
