"""Make the collection importable as ansible_collections.edgeml.fleet for the unit tests, and
the shared test helpers (tests/lib) importable by name."""

import sys
from pathlib import Path

import pytest
from ansible.plugins.loader import init_plugin_loader

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".collections"
LINK = COLLECTIONS / "ansible_collections" / "edgeml" / "fleet"

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to("../../..")
init_plugin_loader([str(COLLECTIONS)])
sys.path.insert(0, str(ROOT / "tests" / "lib"))
sys.path.insert(0, str(ROOT))  # the lab package (lab/), for its unit tests


@pytest.fixture
def repo_root():
    return ROOT
