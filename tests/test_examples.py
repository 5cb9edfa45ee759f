"""The examples run as a newcomer runs them: as scripts, in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_swf_bridge_example_wakes_the_execution_and_hears_back() -> None:
    out = run("examples/swf_bridge.py")
    assert "step export.csv: completed (1200 rows)" in out
    assert "SWF signal received on the bus: approve {'by': 'ops'}" in out
    assert "  step.export.csv " in out
