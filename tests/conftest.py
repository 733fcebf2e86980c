"""Shared test set-up: tests import their helpers (tests/structured.py) by module name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
