"""Render the CLI's real output to the SVG pictures the docs show.

Each picture is a real run of the `asteps` command on a fresh file store, its
colours kept (rich renders the tables; ``Console.save_svg`` draws them), so
the pictures always match the code. ``make docs`` runs this before building.

    .venv/bin/python docs/render_cli.py
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
IMAGES = DOCS / "images"
FLOW = f"{ROOT / 'examples' / 'export_pipeline.py'}:flow"
WIDTH = 100

# The last frame of a rich progress bar: after the last "erase line" (its
# carriage return reads as a newline in text mode), up to
# the "show cursor" that ends the live display.
_LAST_FRAME = re.compile(r".*[\r\n]\x1b\[2K(.*?)\n?\x1b\[\?25h", re.DOTALL)


def asteps(*args: str, cwd: Path) -> tuple[str, str]:
    """Run the asteps command as a user would, in colour; its stdout and stderr."""
    env = {
        **os.environ,
        "COLUMNS": str(WIDTH),
        "FORCE_COLOR": "1",
        "TERM": "xterm-256color",
        "ASTEPS_STORE": "file:.asteps",
    }
    command = [sys.executable, "-m", "asteps", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return done.stdout, done.stderr


def shown(args: list[str]) -> str:
    """The command line as the reader would type it."""
    return "$ asteps " + " ".join(a.replace(str(ROOT) + "/", "") for a in args)


def save(name: str, title: str, parts: list[tuple[list[str], str]]) -> Path:
    """Draw ``parts`` (a command line and its output each) as one SVG."""
    console = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True)
    for args, output in parts:
        console.print(Text(shown(args), style="bold"))
        console.print(Text.from_ansi(output.rstrip("\n")))
    path = IMAGES / f"{name}.svg"
    console.save_svg(str(path), title=title)
    return path


def progress_frame(stderr: str) -> str:
    """The final state of the progress bar a command drew on stderr."""
    match = _LAST_FRAME.match(stderr)
    return match.group(1) if match else ""


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="asteps-docs-") as tmp:
        cwd = Path(tmp)
        demo = ["demo", "--root", str(cwd / "demo")]
        out, _ = asteps(*demo, cwd=cwd)
        save("demo", "asteps demo", [(["demo"], out)])

        run = ["run", FLOW, "--workflow-id", "customer-42"]
        save("run", "asteps run", [(run, asteps(*run, cwd=cwd)[0])])

        plan = [
            "plan",
            FLOW,
            "--workflow-id",
            "customer-42",
            "--force",
            "export.parquet",
            "--reason",
            "parquet schema v2",
        ]
        save("plan", "asteps plan", [(plan, asteps(*plan, cwd=cwd)[0])])

        (cwd / "customers.txt").write_text("".join(f"customer-{i}\n" for i in range(1, 501)))
        rerun = ["rerun", FLOW, "--ids", "customers.txt", "--param", "fail=export.csv"]
        # Shown as run: the next command reads failed.txt, so the picture must
        # say where it came from (the docs are to be followed literally).
        rerun += ["--failed-file", "failed.txt"]
        rerun_out, rerun_err = asteps(*rerun, cwd=cwd)
        retry = ["rerun", FLOW, "--ids", "failed.txt"]
        retry_out, retry_err = asteps(*retry, cwd=cwd)
        save(
            "rerun",
            "asteps rerun",
            [
                (rerun, progress_frame(rerun_err) + "\n" + rerun_out),
                (retry, progress_frame(retry_err) + "\n" + retry_out),
            ],
        )
        shutil.rmtree(cwd / ".asteps", ignore_errors=True)
    for name in ("demo", "run", "plan", "rerun"):
        print(f"wrote {IMAGES / name}.svg")


if __name__ == "__main__":
    main()
