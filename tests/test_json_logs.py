"""``--log-format json``: one JSON object per line on stderr, for log pipelines.

The commands run in real processes, so stderr is exactly what a pipeline reads.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from asteps.cli import main
from asteps.cli.app import JsonFormatter

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = f"{ROOT / 'examples' / 'export_pipeline.py'}:flow"
KEYS = {"time", "level", "logger", "message"}


def asteps(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asteps", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of stderr as JSON: fails on any line that is not one object."""
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert lines, "nothing was logged"
    for line in lines:
        assert isinstance(line, dict)
        assert line.keys() >= KEYS, line
    return lines


def test_a_failed_step_is_logged_with_its_workflow_step_and_status(tmp_path: Path) -> None:
    done = asteps(
        "run", PIPELINE, "--workflow-id", "customer-42", "--store", "memory://",
        "--param", "fail=export.csv", "--log-format", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "export.csv" in done.stdout  # the table still goes to stdout
    lines = json_lines(done.stderr)
    [warning] = [line for line in lines if line["level"] == "WARNING"]
    assert warning["logger"] == "asteps"
    assert (warning["workflow_id"], warning["step"], warning["status"]) == (
        "customer-42",
        "export.csv",
        "failed",
    )
    assert "upstream returned HTTP 503" in warning["message"]
    assert lines[-1]["level"] == "ERROR"
    assert lines[-1]["workflow_id"] == "customer-42"
    assert lines[-1]["message"].startswith("failed: step export.csv failed")


def test_debug_logs_give_each_decision_with_its_step(tmp_path: Path) -> None:
    done = asteps(
        "-vv", "plan", PIPELINE, "--workflow-id", "c-1", "--store", "memory://",
        "--force", "export", "--log-format", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    decisions = {
        line["step"]: line["decision"]
        for line in json_lines(done.stderr)
        if line["logger"] == "asteps" and "step" in line
    }
    assert decisions == dict.fromkeys(
        ["fetch.orders", "fetch.customers", "export.csv", "export.parquet", "report.email"],
        "run",
    )


def test_bad_input_is_one_json_error_line(tmp_path: Path) -> None:
    done = asteps(
        "run", "missing.py:flow", "--workflow-id", "c-1", "--log-format", "json", cwd=tmp_path
    )
    assert done.returncode == 2
    [line] = json_lines(done.stderr)
    assert line["level"] == "ERROR"
    assert line["logger"] == "asteps.cli"
    assert line["message"].startswith("error: flow file 'missing.py' does not exist")


@pytest.mark.parametrize(
    "args",
    [
        ["rerun", PIPELINE, "--log-format", "json", "--ids", "missing.txt"],
        ["swf", "worker", PIPELINE, "--log-format", "json", "--concurrency", "0"],
    ],
    ids=["unreadable file", "out of range"],
)
def test_a_usage_error_is_one_json_error_line(tmp_path: Path, args: list[str]) -> None:
    done = asteps(*args, cwd=tmp_path)
    assert done.returncode == 2
    [line] = json_lines(done.stderr)
    assert (line["level"], line["logger"]) == ("ERROR", "asteps.cli")


def test_the_demo_logs_json_too(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    done = asteps("-vv", "demo", "--root", root, "--log-format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    steps = {line.get("step") for line in json_lines(done.stderr)}
    assert {"fetch", "a.extract", "report"} <= steps


def test_text_stays_the_default(tmp_path: Path) -> None:
    done = asteps(
        "run", PIPELINE, "--workflow-id", "c-1", "--store", "memory://",
        "--param", "fail=export.csv",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "WARNING" in done.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(done.stderr.splitlines()[0])


def record(message: str, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("asteps", logging.WARNING, __file__, 1, "%s", (message,), None)
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize("message", ["two\nlines", "separator\u2028inside", "caf\u00e9 \x1b[31m"])
def test_a_message_from_input_stays_on_one_line_and_comes_back_equal(message: str) -> None:
    line = JsonFormatter().format(record(message, workflow_id="wf", step="a"))
    assert len(line.splitlines()) == 1
    assert line.isascii()
    data = json.loads(line)
    assert (data["message"], data["workflow_id"], data["step"]) == (message, "wf", "a")
    assert "status" not in data  # only the fields the record carries


def test_an_exception_is_one_field() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        made = record("it broke")
        made.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(made))
    assert data["exception"].splitlines()[-1] == "ValueError: bad"
    assert data["time"].endswith("Z")


@pytest.mark.parametrize(
    "args",
    [
        ["run", PIPELINE, "--workflow-id", "c-1", "--log-format", "json", "--bogus"],
        ["run", PIPELINE, "--bogus", "--log-format=json", "--workflow-id", "c-1"],
        ["steps", "unmark", "--workflow-id", "c-1", "a", "--log-format", "json", "--bogus"],
        ["rerun", PIPELINE, "--log-format", "json", "--ids"],  # an option without its value
        ["run", PIPELINE, "extra", "--log-format", "json"],  # an argument too many
        ["--bogus", "run", PIPELINE, "--log-format", "json"],  # the group's own options
    ],
    ids=["unknown option", "before it", "nested group", "no value", "extra", "group option"],
)
def test_a_command_line_click_cannot_parse_is_one_json_error_line(
    tmp_path: Path, args: list[str]
) -> None:
    done = asteps(*args, cwd=tmp_path)
    assert done.returncode == 2
    [line] = json_lines(done.stderr)
    assert (line["level"], line["logger"]) == ("ERROR", "asteps.cli")
    assert line["message"].startswith("error: ")
    assert "--help" in line["message"]  # where to look, as click's own usage says


# -- two commands in one process (a test, a program calling main) -----------------

LOGGERS = ("", "asteps", "asteps.cli", "botocore")


def logging_state() -> tuple[list[logging.Handler], dict[str, int]]:
    """The root logger's handlers and the levels the CLI may set."""
    return list(logging.getLogger().handlers), {
        name: logging.getLogger(name or None).level for name in LOGGERS
    }


def failing_run(*more: str) -> list[str]:
    return [
        *more[:1], "run", PIPELINE, "--workflow-id", "c-1", "--store", "memory://",
        "--param", "fail=export.csv", *more[1:],
    ]  # fmt: skip


def test_a_command_leaves_logging_as_it_found_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = logging_state()
    done = CliRunner().invoke(main, failing_run("-vv", "--log-format", "json"))
    assert done.exit_code == 1
    assert json_lines(done.stderr)
    assert logging_state() == before


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus", "run", PIPELINE, "--log-format", "json"],  # refused by the group
        ["run", PIPELINE, "--log-format", "json", "--bogus"],  # refused by the command
    ],
    ids=["group", "command"],
)
def test_a_refused_command_line_leaves_logging_as_it_found_it(args: list[str]) -> None:
    before = logging_state()
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 2
    [line] = json_lines(done.stderr)
    assert line["level"] == "ERROR"
    assert logging_state() == before


def test_json_logs_and_a_batch_filter_do_not_leak_into_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun, in JSON and with its batch filter (which drops a failed step's
    WARNING), then a run in text: the run's stderr is text, its WARNING shown."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ids.txt").write_text("c-1\n")
    cli = CliRunner()
    rerun = cli.invoke(
        main,
        ["rerun", PIPELINE, "--ids", "ids.txt", "--store", "memory://", "--param",
         "fail=export.csv", "--no-progress", "--log-format", "json"],
    )  # fmt: skip
    assert rerun.exit_code == 1
    assert "step export.csv failed" not in rerun.stderr  # dropped: the summary says it
    run = cli.invoke(main, failing_run())
    assert run.exit_code == 1
    assert "WARNING" in run.stderr
    assert "step export.csv failed" in run.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(run.stderr.splitlines()[0])


def test_verbosity_does_not_leak_into_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    plan = ["plan", PIPELINE, "--workflow-id", "c-1", "--store", "memory://", "--log-format"]
    loud = cli.invoke(main, ["-vv", *plan, "json"])
    assert loud.exit_code == 0
    assert any(line["level"] == "DEBUG" for line in json_lines(loud.stderr))
    quiet = cli.invoke(main, [*plan, "json"])
    assert quiet.exit_code == 0
    assert quiet.stderr == ""
