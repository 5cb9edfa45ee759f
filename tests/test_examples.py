"""The examples run as a newcomer runs them: as scripts, in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_swf_bridge_example_wakes_the_execution_and_hears_back() -> None:
    out = run("examples/swf_bridge.py")
    assert "step export.csv: completed (1200 rows)" in out
    assert "SWF signal received on the bus: approve {'by': 'ops'}" in out
    assert "  step.export.csv " in out


def test_the_readme_quickstart_runs_then_skips(tmp_path: Path) -> None:
    script = str(ROOT / "examples" / "quickstart.py")
    first = run(script, cwd=tmp_path).splitlines()
    second = run(script, cwd=tmp_path).splitlines()
    assert first[0] == "completed 1200"
    assert second[0] == "skipped None"
    assert (tmp_path / ".asteps" / "customer-42" / "steps" / "export.csv").is_file()


def test_the_readme_quickstart_is_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("## In twenty lines\n\n```python\n")[1].split("```")[0]
    assert snippet in (ROOT / "examples" / "quickstart.py").read_text()
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 20


def test_the_s3_service_example_lists_once_per_workflow_and_writes_once_per_step() -> None:
    out = run("examples/s3_service.py").splitlines()
    assert out == [
        "first pass: 20 workflows, S3 calls {'ListObjectsV2': 20, 'PutObject': 60}",
        "second pass: 20 workflows, S3 calls {'ListObjectsV2': 20}",
    ]
