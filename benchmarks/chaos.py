"""Chaos run, as long as you like: `make bench-chaos CHAOS_ARGS='--kills 200'`.

The harness lives in tests/chaos.py (tests/test_chaos.py runs it short in `make
test`); see its docstring for what it does and what it counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos import main

if __name__ == "__main__":
    sys.exit(main())
