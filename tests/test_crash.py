"""A `rerun` killed with SIGKILL mid-batch on the file store, then run again.

Each step writes a "work" file before it returns, so a marker without its work
would be a step marked done that did not do its work. After the kill no such
marker exists, and a second run completes every workflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from asteps._names import is_valid_name

FLOW = """
import anyio, pathlib

async def flow(runner, **params):
    for name in ("extract", "load"):
        async def work(name=name):
            await anyio.sleep(0.002)
            pathlib.Path("work", f"{runner.workflow_id}.{name}").touch()
        await runner.step(name, work)
"""
IDS = [f"w{i:03d}" for i in range(300)]


def rerun(tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asteps",
            "rerun",
            f"{tmp_path / 'flow.py'}:flow",
            "--ids",
            "ids.txt",
            "--concurrency",
            "8",
            "--no-progress",
            "--json",
        ],
        cwd=tmp_path,
        env={**os.environ, "ASTEPS_STORE": f"file:{tmp_path / 'store'}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def markers(tmp_path: Path) -> set[str]:
    """Marker files (a killed writer's temporary files are not markers)."""
    found = (tmp_path / "store").glob("*/steps/*")
    return {f"{p.parent.parent.name}.{p.name}" for p in found if is_valid_name(p.name)}


def work_done(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "work").iterdir()}


def test_a_rerun_killed_mid_batch_leaves_no_marker_without_its_work(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{wid}\n" for wid in IDS))
    (tmp_path / "work").mkdir()

    process = rerun(tmp_path)
    deadline = time.monotonic() + 60
    while len(markers(tmp_path)) < 40:  # well into the batch
        assert time.monotonic() < deadline, "no progress within 60 s"
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    killed = markers(tmp_path)
    assert len(killed) < 2 * len(IDS), "the batch ended before the kill"
    assert killed <= work_done(tmp_path)  # no marker without its work

    again = rerun(tmp_path)
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert json.loads(stdout)["workflows"]["succeeded"] == len(IDS)
    expected = {f"{wid}.{name}" for wid in IDS for name in ("extract", "load")}
    assert markers(tmp_path) == expected
    assert markers(tmp_path) <= work_done(tmp_path)
