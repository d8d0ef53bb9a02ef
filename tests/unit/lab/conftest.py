"""Make the lab package (lab/ at the repository root) importable for its unit tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
