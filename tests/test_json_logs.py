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
