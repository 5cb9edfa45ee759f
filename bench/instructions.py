"""The cost of a step in instructions, which do not depend on the machine's load.

Runs ``bench/overhead.py --one KIND`` under valgrind's callgrind with 0 and
with N steps, for a bare asyncio task, an executed step and a skipped step:
the difference over N is the instructions one step costs (start-up and
imports cancel out). Deterministic for the same interpreter and packages, so
it is the figure to compare across changes; the wall-time ratios of
``bench/overhead.py`` carry the load and the garbage collector too.
Needs valgrind (Debian's ``valgrind``); takes a few minutes.

    .venv/bin/python bench/instructions.py [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GOALS = {"executed": 2.5, "skipped": 1.5}


def instructions(kind: str, steps: int) -> int:
    """Instructions of one run of ``overhead.py --one kind --steps steps``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(HERE / "overhead.py"),
                "--one",
                kind,
                "--steps",
                str(steps),
            ],
            check=True,
            capture_output=True,
        )
        for line in out.read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no summary")


def main(steps: int) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    per_step = {}
    for kind in ("bare", "executed", "skipped"):
        per_step[kind] = (instructions(kind, steps) - instructions(kind, 0)) / steps
    lines = [
        f"instructions per step (callgrind, {steps} steps, deterministic)",
        f"  bare asyncio task : {per_step['bare']:9,.0f}",
    ]
    for kind, goal in GOALS.items():
        ratio = per_step[kind] / per_step["bare"]
        verdict = "ok" if ratio <= goal else "OVER GOAL"
        count = f"{per_step[kind]:9,.0f}"
        lines.append(f"  {kind:<17} : {count}  ratio {ratio:4.2f}x  (goal <= {goal}x, {verdict})")
    print("\n".join(lines))
    # Both files from the same run, here: they cannot tell two runs apart.
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "instructions.txt").write_text("\n".join(lines) + "\n")
    (RESULTS / "instructions.json").write_text(
        json.dumps({"steps": steps, "per_step": per_step}, indent=2) + "\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    main(parser.parse_args().steps)
