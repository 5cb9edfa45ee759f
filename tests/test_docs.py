"""Every Python example in the README and the docs runs as written.

Each fenced ``python`` block is run in a fresh namespace, in a temporary
directory. A block whose first line is ``# not runnable: ...`` (it needs real
AWS) is compiled only. Blocks that include a file (``--8<--``) are skipped:
the file itself is run by tests/test_examples.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
NOT_RUNNABLE = "# not runnable:"


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(FENCE.finditer(text), start=1):
            code = match.group(1)
            if "--8<--" in code:
                continue
            found.append((f"{page.relative_to(ROOT)}#{number}", code))
    return found


BLOCKS = blocks()


def test_the_docs_have_examples_to_run() -> None:
    runnable = [code for _, code in BLOCKS if not code.startswith(NOT_RUNNABLE)]
    assert len(runnable) >= 10


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_every_python_example_runs(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = compile(code, where, "exec")
    if code.startswith(NOT_RUNNABLE):
        return  # it compiles; running it needs real AWS
    monkeypatch.chdir(tmp_path)
    exec(compiled, {"__name__": "__main__"})


def test_every_python_example_type_checks_under_mypy_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user who checks their code with ``mypy --strict`` can copy any
    example: each block that uses asteps is checked as a module of its own
    (a fragment's own undefined names aside; simpleflow has no types)."""
    from mypy import api

    monkeypatch.chdir(ROOT)  # where mypy finds asteps itself
    wheres = {}
    for number, (where, code) in enumerate(BLOCKS):
        if "asteps" in code and "simpleflow" not in code:
            (tmp_path / f"example_{number}.py").write_text(code, encoding="utf-8")
            wheres[f"example_{number}.py"] = where
    stdout, _, _ = api.run(
        [
            *(str(tmp_path / name) for name in wheres),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--disable-error-code=name-defined",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
        ]
    )
    shown = []
    for line in stdout.splitlines():
        path, _, problem = line.partition(":")
        if path.startswith(str(tmp_path)):
            shown.append(f"{wheres[Path(path).name]}:{problem}")
    assert shown == []


# -- the CLI's docs can be followed literally ---------------------------------------


def shown_commands(svg: Path) -> list[str]:
    """The command lines a picture of docs/render_cli.py shows, as typed."""
    import html

    lines = [html.unescape(t) for t in re.findall(r">([^<>]*)</text>", svg.read_text())]
    text = "".join(lines).replace("\xa0", " ")
    # A long command wraps: its next line starts with an option.
    return [" ".join(c.split()) for c in re.findall(r"\$ (asteps (?:.|\n(?=--))*)", text)]


def test_the_rerun_walkthrough_writes_the_file_its_retry_reads() -> None:
    """The picture showed `--ids failed.txt` after a rerun that, as shown,
    wrote its retry file under a default name: followed literally, the retry
    failed (No such file 'failed.txt')."""
    commands = shown_commands(ROOT / "docs" / "images" / "rerun.svg")
    assert len(commands) == 2, commands
    first, retry = commands
    assert "--ids failed.txt" in retry
    assert "--failed-file failed.txt" in first


def test_the_cli_reference_says_that_verbose_comes_before_the_command() -> None:
    """`-v` is an option of `asteps` itself: `asteps run ... -v` is refused."""
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "`asteps -v run" in page


def test_the_cli_reference_says_what_a_dry_run_still_writes() -> None:
    """A dry run writes no marker, but a rerun's retry file (and, stopped, the
    unfinished and resume files) still appear in the working directory."""
    from click.testing import CliRunner

    from asteps.cli import main

    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "A dry run (`plan`, `rerun --dry-run`) runs no step and writes no marker" in page
    assert "asteps-failed-<time>-<pid>.txt" in page
    rerun_help = CliRunner().invoke(main, ["rerun", "--help"]).output
    assert "write nothing" not in rerun_help
