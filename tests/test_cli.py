"""The `asteps` command, through its entry point, on the FileStore and on S3 (moto)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from click.testing import CliRunner, Result

from asteps.cli.app import SAME_STOP_WITHIN, Interruption
from asteps.cli.swf_worker import worker_interruption
from asteps.testing import MotoServer

from .conftest import asteps_process, invoke

ROOT = Path(__file__).resolve().parent.parent
FLOW = str(ROOT / "examples" / "export_pipeline.py") + ":flow"
STEPS = ["fetch.orders", "fetch.customers", "export.csv", "export.parquet", "report.email"]


def as_json(result: Result) -> object:
    return json.loads(result.stdout)


# -- run and plan ----------------------------------------------------------------


def test_run_executes_then_skips_and_shows_a_table(cli: CliRunner, tmp_path: Path) -> None:
    first = invoke(cli, "run", FLOW, "--workflow-id", "customer-42")
    assert first.exit_code == 0, first.output
    for name in STEPS:
        assert name in first.stdout
    assert first.stdout.count("completed") == 5
    assert (tmp_path / ".asteps" / "customer-42" / "steps" / "export.csv").is_file()

    second = invoke(cli, "run", FLOW, "--workflow-id", "customer-42", "--json")
    steps = as_json(second)["steps"]  # type: ignore[index]
    assert [s["status"] for s in steps] == ["skipped"] * 5


FLAKY_FLOW = """
from asteps import Retry


async def flow(runner, **_):
    calls = 0

    async def flaky():
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("reset by peer")
        return "ok"

    async def plain():
        return "ok"

    await runner.step("flaky", flaky, retry=Retry(3, delay=0.0, jitter=0.0))
    await runner.step("plain", plain)
"""


def test_run_shows_the_attempts_of_a_retried_step(cli: CliRunner, tmp_path: Path) -> None:
    flow = tmp_path / "flaky_flow.py"
    flow.write_text(FLAKY_FLOW)
    table = invoke(cli, "run", f"{flow}:flow", "--workflow-id", "c1")
    assert table.exit_code == 0, table.output
    assert "completed after 3 attempts" in table.stdout
    assert table.stdout.count("attempts") == 1  # a step tried once says nothing

    result = invoke(cli, "run", f"{flow}:flow", "--workflow-id", "c2", "--json")
    rows = as_json(result)["steps"]  # type: ignore[index]
    assert [(r["step"], r["attempts"]) for r in rows] == [("flaky", 3), ("plain", 1)]


def test_rerun_counts_the_steps_that_needed_more_than_one_attempt(
    cli: CliRunner, tmp_path: Path
) -> None:
    flow = tmp_path / "flaky_flow.py"
    flow.write_text(FLAKY_FLOW)
    ids = tmp_path / "ids.txt"
    ids.write_text("w1\nw2\n")
    table = invoke(cli, "rerun", f"{flow}:flow", "--ids", str(ids))
    assert table.exit_code == 0, table.output
    assert "steps retried" in table.stdout
    assert "2 (6 attempts in all)" in table.stdout
    (tmp_path / "again.txt").write_text("w3\n")
    result = invoke(cli, "rerun", f"{flow}:flow", "--ids", str(tmp_path / "again.txt"), "--json")
    steps = as_json(result)["steps"]  # type: ignore[index]
    assert (steps["retried"], steps["attempts"], steps["completed"]) == (1, 3, 2)


def test_run_force_reruns_a_subtree_with_the_reason(cli: CliRunner) -> None:
    invoke(cli, "run", FLOW, "--workflow-id", "c1")
    result = invoke(
        cli,
        "run",
        FLOW,
        "--workflow-id",
        "c1",
        "--force",
        "export",
        "--reason",
        "new columns",
        "--json",
    )
    rows = {s["step"]: s for s in as_json(result)["steps"]}  # type: ignore[index]
    assert rows["export.csv"]["status"] == "completed"
    assert rows["export.csv"]["reasons"] == ["new columns"]
    assert rows["export.parquet"]["patterns"] == ["export"]
    assert rows["report.email"]["reasons"] == ["Dep of export.parquet"]
    assert rows["fetch.orders"]["status"] == "skipped"


def test_a_failing_step_makes_run_exit_1(cli: CliRunner) -> None:
    result = invoke(cli, "run", FLOW, "--workflow-id", "c1", "--param", "fail=export.csv")
    assert result.exit_code == 1
    assert "HTTP 503" in result.output


REOPENING_FLOW = """
async def flow(runner):
    async with runner.store:  # the CLI opened it already: a bug in the flow
        pass
"""


def test_a_flow_that_opens_the_store_again_fails_as_a_bug_not_as_an_unreachable_store(
    cli: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "reopening.py").write_text(REOPENING_FLOW)
    result = invoke(cli, "run", "reopening.py:flow", "--workflow-id", "c1", "--store", "memory://")
    assert result.exit_code == 1, result.output  # a failed workflow, not exit 3
    assert "RuntimeError: this MemoryStore is already open: share it" in result.output


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        ("no_colon", "must be 'package.module:function'"),
        ("missing/file.py:flow", "does not exist"),
        ("no_such_module_xyz:flow", "cannot import 'no_such_module_xyz'"),
        (str(ROOT / "examples" / "export_pipeline.py") + ":nope", "no attribute 'nope'"),
        ("json:dumps", "must be an 'async def flow(runner, **params)'"),
    ],
)
def test_a_bad_flow_is_refused_with_exit_2(cli: CliRunner, flow: str, message: str) -> None:
    result = invoke(cli, "run", flow, "--workflow-id", "c1")
    assert result.exit_code == 2
    assert message in result.output
    assert not Path(".asteps").exists()


def test_bad_patterns_and_params_are_refused_before_anything_is_written(cli: CliRunner) -> None:
    bad_pattern = invoke(cli, "run", FLOW, "--workflow-id", "c1", "--force", "a..b")
    assert bad_pattern.exit_code == 2
    assert "empty segment" in bad_pattern.output
    bad_param = invoke(cli, "run", FLOW, "--workflow-id", "c1", "--param", "novalue")
    assert bad_param.exit_code == 2
    bad_id = invoke(cli, "run", FLOW, "--workflow-id", "a/b")
    assert bad_id.exit_code == 2
    bad_store = invoke(cli, "run", FLOW, "--workflow-id", "c1", "--store", "ftp://x")
    assert bad_store.exit_code == 3
    assert not Path(".asteps").exists()


def test_plan_says_what_would_run_and_why_and_writes_nothing(cli: CliRunner) -> None:
    invoke(cli, "run", FLOW, "--workflow-id", "c1")
    before = sorted(p.name for p in Path(".asteps/c1/steps").iterdir())
    result = invoke(
        cli,
        "plan",
        FLOW,
        "--workflow-id",
        "c1",
        "--force",
        "export.csv",
        "--skip",
        "report",
        "--reason",
        "why not",
    )
    assert result.exit_code == 0
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "would run" in lines["export.csv"]
    assert "forced by export.csv: why not" in lines["export.csv"]
    assert "already done" in lines["fetch.orders"]
    assert "skipped by report: why not" in lines["report.email"]
    assert sorted(p.name for p in Path(".asteps/c1/steps").iterdir()) == before


@pytest.mark.parametrize(
    "patterns",
    [[], ["--force", "export.parquet"], ["--force", "*", "--skip", "fetch"], ["--skip", "*"]],
)
def test_the_plan_matches_what_a_real_run_then_does(cli: CliRunner, patterns: list[str]) -> None:
    invoke(cli, "run", FLOW, "--workflow-id", "c1", "--force", "report")  # some history
    invoke(cli, "steps", "unmark", "--workflow-id", "c1", "export.csv", "--yes")
    plan = as_json(invoke(cli, "plan", FLOW, "--workflow-id", "c1", *patterns, "--json"))
    real = as_json(invoke(cli, "run", FLOW, "--workflow-id", "c1", *patterns, "--json"))
    planned = [(s["step"], s["decision"], s["forced"], s["reasons"]) for s in plan["steps"]]  # type: ignore[index]
    done = [(s["step"], s["decision"], s["forced"], s["reasons"]) for s in real["steps"]]  # type: ignore[index]
    assert sorted(planned) == sorted(done)


# -- rerun -------------------------------------------------------------------------


def write_ids(path: Path, ids: list[str]) -> str:
    path.write_text("".join(f"{i}\n" for i in ids))
    return str(path)


def not_read(summary: Any, ids: list[str]) -> list[str]:
    """The ids of a stopped rerun that were not read: from its ``next_line`` on
    (one id a line in ``ids``)."""
    line = summary["next_line"]
    return [] if line is None else ids[line - 1 :]


def test_rerun_runs_every_id_once_and_summarises(cli: CliRunner, tmp_path: Path) -> None:
    ids = write_ids(tmp_path / "ids.txt", ["c1", "c2", "# comment", "", "c3", "c2"])
    result = invoke(cli, "rerun", FLOW, "--ids", ids, "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    summary = as_json(result)
    assert summary["workflows"] == {  # type: ignore[index]
        "finished": 3,
        "succeeded": 3,
        "failed": 0,
        "unfinished": 0,
    }
    assert summary["steps"] == {"completed": 15}  # type: ignore[index]
    assert summary["retry_file"] is None  # type: ignore[index]


def test_rerun_writes_failed_ids_for_an_exact_retry(cli: CliRunner, tmp_path: Path) -> None:
    ids = write_ids(tmp_path / "ids.txt", [f"c{i}" for i in range(6)])
    invoke(cli, "rerun", FLOW, "--ids", ids, "--no-progress")  # all done once
    # a forced rerun where three workflows fail
    flaky = tmp_path / "flaky.py"
    flaky.write_text(
        "from examples_flow import flow as base\n"
        "async def flow(runner, **params):\n"
        "    fail = 'export.csv' if runner.workflow_id in {'c1', 'c3', 'c4'} else ''\n"
        "    await base(runner, fail=fail, delay='0')\n"
    )
    (tmp_path / "examples_flow.py").write_text(
        (ROOT / "examples" / "export_pipeline.py").read_text()
    )
    sys.path.insert(0, str(tmp_path))
    try:
        failed = invoke(
            cli,
            "rerun",
            f"{flaky}:flow",
            "--ids",
            ids,
            "--force",
            "export",
            "--no-progress",
            "--failed-file",
            "retry.txt",
            "--json",
        )
    finally:
        sys.path.remove(str(tmp_path))
    assert failed.exit_code == 1
    summary = as_json(failed)
    assert sorted(summary["failed_ids"]) == ["c1", "c3", "c4"]  # type: ignore[index]
    assert summary["retry_file"] == "retry.txt"  # type: ignore[index]
    assert sorted(Path("retry.txt").read_text().split()) == ["c1", "c3", "c4"]

    retried = invoke(
        cli, "rerun", FLOW, "--ids", "retry.txt", "--force", "export", "--no-progress", "--json"
    )
    assert retried.exit_code == 0
    again = as_json(retried)
    assert again["workflows"]["succeeded"] == 3  # type: ignore[index]
    # exactly those three reran their exports (and report, their dependent)
    assert again["steps"] == {"completed": 9, "skipped": 6}  # type: ignore[index]


def test_the_rerun_summary_counts_the_failures_it_leaves_out_and_keeps_reasons_readable(
    tmp_path: Path,
) -> None:
    """14 failures, 5 shown: the table says 9 more exist; a 60-character id
    does not squeeze the reasons to one word per line in 80 columns."""
    long_id = "w" + "x" * 59
    write_ids(tmp_path / "ids.txt", [long_id, *(f"customer-{i}" for i in range(13))])
    done = subprocess.run(
        [
            sys.executable, "-m", "asteps", "rerun", FLOW, "--ids", "ids.txt",
            "--store", "memory://", "--param", "fail=export.csv", "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80"},
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "and 9 more failed" in done.stdout
    assert sum("upstream returned HTTP 503" in line for line in lines) == 5, done.stdout
    assert "--ids asteps-failed-" in done.stdout  # the retry file's name is not cut


def test_rerun_dry_run_counts_what_would_happen_and_writes_nothing(
    cli: CliRunner, tmp_path: Path
) -> None:
    ids = write_ids(tmp_path / "ids.txt", ["c1", "c2", "c3"])
    invoke(cli, "run", FLOW, "--workflow-id", "c1")
    result = invoke(
        cli,
        "rerun",
        FLOW,
        "--ids",
        ids,
        "--force",
        "export",
        "--dry-run",
        "--no-progress",
        "--json",
    )
    assert as_json(result)["steps"] == {"would run": 13, "would skip": 2}  # type: ignore[index]
    assert sorted(p.name for p in Path(".asteps").iterdir()) == ["c1"]


def test_rerun_dry_run_says_why_steps_would_run_in_the_table_and_in_json(
    cli: CliRunner, tmp_path: Path
) -> None:
    ids = write_ids(tmp_path / "ids.txt", ["c1", "c2", "c3"])
    invoke(cli, "run", FLOW, "--workflow-id", "c1")
    args = ["rerun", FLOW, "--ids", ids, "--force", "export", "--dry-run", "--no-progress"]
    reasons = as_json(invoke(cli, *args, "--json"))["run_reasons"]
    assert sum(reasons.values()) == 13  # type: ignore[union-attr]
    assert reasons["not done"] > 0  # type: ignore[index]
    assert any(r.startswith("forced by export") for r in reasons)  # type: ignore[union-attr]
    table = invoke(cli, *args).stdout
    assert "would run" in table
    assert "13: not done" in table or "13: forced by export" in table


def test_rerun_reads_ids_from_stdin(cli: CliRunner) -> None:
    result = invoke(cli, "rerun", FLOW, "--ids", "-", "--no-progress", "--json", input="a\nb\n")
    assert as_json(result)["workflows"]["succeeded"] == 2  # type: ignore[index]


def test_ctrl_c_cancels_cleanly_and_writes_the_unfinished_ids(tmp_path: Path) -> None:
    flow = tmp_path / "slow.py"
    flow.write_text(
        "import anyio, pathlib\n"
        "async def flow(runner, **params):\n"
        "    async def slow():\n"
        "        await anyio.sleep(0.4)\n"
        "        pathlib.Path('finished', runner.workflow_id).touch()\n"
        "    await runner.step('only', slow)\n"
    )
    (tmp_path / "finished").mkdir()
    all_ids = [f"w{i:03d}" for i in range(200)]
    ids = write_ids(tmp_path / "ids.txt", all_ids)
    env = {**os.environ, "ASTEPS_STORE": f"file:{tmp_path / 'store'}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asteps",
            "rerun",
            f"{flow}:flow",
            "--ids",
            ids,
            "--concurrency",
            "10",
            "--failed-file",
            str(tmp_path / "left.txt"),
            "--json",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not any((tmp_path / "store").glob("*/steps/only")):  # some workflows finished
        assert time.monotonic() < deadline, "no workflow finished within 60 s"
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    finished, unfinished = summary["workflows"]["finished"], summary["unfinished_ids"]
    assert 0 < finished < 200
    assert finished + len(unfinished) + len(not_read(summary, all_ids)) == 200
    assert len(unfinished) <= 3 * 10 + 4 * 10  # in flight, listed, being listed, buffered
    assert sorted(Path(tmp_path / "left.txt").read_text().split()) == sorted(unfinished)
    marked = {p.parent.parent.name for p in (tmp_path / "store").glob("*/steps/only")}
    activity_finished = {p.name for p in (tmp_path / "finished").iterdir()}
    assert marked <= activity_finished  # no marker for a step whose work did not finish
    assert len(marked) >= finished  # every finished workflow's step is marked
    assert len(activity_finished) < 200  # in-flight work really was cancelled


# -- steps list / mark / unmark ---------------------------------------------------


def test_steps_mark_list_and_unmark_by_pattern(cli: CliRunner) -> None:
    mark = invoke(cli, "steps", "mark", "--workflow-id", "c1", "a", "a.b", "a.b.c", "ab", "b")
    assert mark.exit_code == 0
    listed = as_json(invoke(cli, "steps", "list", "--workflow-id", "c1", "--json"))
    assert listed == {"c1": ["a", "a.b", "a.b.c", "ab", "b"]}

    dry = invoke(cli, "steps", "unmark", "--workflow-id", "c1", "a", "--dry-run")
    assert "a, a.b, a.b.c" in dry.stdout
    refused = invoke(cli, "steps", "unmark", "--workflow-id", "c1", "a", input="n\n")
    assert refused.exit_code == 1
    assert as_json(invoke(cli, "steps", "list", "--workflow-id", "c1", "--json"))["c1"] == [  # type: ignore[index]
        "a",
        "a.b",
        "a.b.c",
        "ab",
        "b",
    ]
    confirmed = invoke(cli, "steps", "unmark", "--workflow-id", "c1", "a", input="y\n")
    assert confirmed.exit_code == 0
    assert "removed 3 marker(s)" in confirmed.stdout
    assert as_json(invoke(cli, "steps", "list", "--workflow-id", "c1", "--json")) == {
        "c1": ["ab", "b"]
    }


def test_steps_commands_take_ids_files(cli: CliRunner, tmp_path: Path) -> None:
    ids = write_ids(tmp_path / "ids.txt", ["w1", "w2", "w3"])
    invoke(cli, "steps", "mark", "--ids", ids, "report", "report.pdf")
    removed = as_json(invoke(cli, "steps", "unmark", "--ids", ids, "report", "--yes", "--json"))
    assert removed == {"removed": {w: ["report", "report.pdf"] for w in ("w1", "w2", "w3")}}


def test_steps_unmark_goes_on_after_a_workflow_it_cannot_unmark_and_names_it(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One workflow's failure cancelled the removals of the others: an operator
    # could not tell which workflows were left unmarked.
    import asteps.cli.steps_unmark

    ids = write_ids(tmp_path / "ids.txt", ["w1", "w2", "w3"])
    invoke(cli, "steps", "mark", "--ids", ids, "report", "report.pdf")
    listed = asteps.cli.steps_unmark._find_matching

    async def then_blocked(*args: Any) -> dict[str, list[str]]:
        found = await listed(*args)
        # Listed, then a directory stands at w2's marker: it cannot be removed.
        marker = tmp_path / ".asteps" / "w2" / "steps" / "report"
        marker.unlink()
        (marker / "inside").mkdir(parents=True)
        return found

    monkeypatch.setattr(asteps.cli.steps_unmark, "_find_matching", then_blocked)
    monkeypatch.setattr(asteps.cli.steps_unmark, "BULK_CONCURRENCY", 1)  # w3 after w2, for sure
    result = invoke(cli, "steps", "unmark", "--ids", ids, "report", "--yes", "--json")
    assert result.exit_code == 3, result.output  # the store could not be used
    assert as_json(result) == {
        "removed": {
            "w1": ["report", "report.pdf"],
            "w2": ["report.pdf"],
            "w3": ["report", "report.pdf"],
        },
        "not_removed": {"w2": ["report"]},
    }
    assert "workflow w2: 1 of 2 marker(s)" in result.stderr
    assert "not removed: 'report'" in result.stderr
    assert "1 marker(s) of 1 workflow(s) were not removed" in result.stderr
    assert not (tmp_path / ".asteps" / "w3" / "steps" / "report").exists()


def test_steps_unmark_stops_at_the_first_workflow_when_the_store_cannot_be_reached(
    cli: CliRunner, aws: MotoServer, flaky: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store listed the markers, then went down: the first workflow's
    removal finds it unreachable (no connection, after the client's retries),
    and the workflows after it are not attempted, since each would wait through
    the same retries to fail the same way. Exit 3; every workflow is named, and
    those not attempted are said so. A workflow whose markers the store
    refuses does not stop the others (the test above)."""
    import asteps._aws
    import asteps.cli.steps_unmark

    boto3.client("s3", endpoint_url=aws.endpoint_url).create_bucket(Bucket="steps")
    store = f"s3://steps?endpoint_url={flaky.endpoint_url}"  # moto, behind a proxy
    ids = write_ids(tmp_path / "ids.txt", ["w1", "w2", "w3"])
    invoke(cli, "steps", "mark", "--ids", ids, "report", "--store", store)
    listed = asteps.cli.steps_unmark._find_matching

    async def then_down(*args: Any) -> dict[str, list[str]]:
        found = await listed(*args)
        flaky.close()  # nothing listens at the store's endpoint any more
        return found

    monkeypatch.setattr(asteps.cli.steps_unmark, "_find_matching", then_down)
    monkeypatch.setattr(asteps.cli.steps_unmark, "BULK_CONCURRENCY", 1)  # w2 after w1, for sure
    # One attempt a request: no backoff to wait through before w1 fails.
    one_attempt = {"mode": "standard", "total_max_attempts": 1}
    monkeypatch.setattr(asteps._aws, "DEFAULT_RETRIES", one_attempt)
    result = invoke(
        cli, "steps", "unmark", "--ids", ids, "report", "--yes", "--json", "--store", store
    )
    assert result.exit_code == 3, result.output
    assert as_json(result) == {
        "removed": {},
        "not_removed": {"w1": ["report"], "w2": ["report"], "w3": ["report"]},
        "not_attempted": ["w2", "w3"],
    }
    assert (
        "workflow w1: none of the 1 marker(s) in bucket 'steps' under prefix 'w1/steps/' is known"
        in (result.stderr)
    )
    assert "the others were" not in result.stderr  # nothing was removed
    assert f"endpoint {flaky.endpoint_url} is unreachable" in result.stderr
    # One line for the workflows not attempted, however many: not one each.
    assert "workflow w2:" not in result.stderr
    assert "2 workflow(s) were not attempted, as the store could not be reached: w2, w3\n" in (
        result.stderr
    )


def test_steps_need_exactly_one_target(cli: CliRunner) -> None:
    assert invoke(cli, "steps", "list").exit_code == 2
    assert invoke(cli, "steps", "mark", "--workflow-id", "w", "bad..name").exit_code == 2


# -- the same commands on S3 (moto over HTTP) ---------------------------------------


def test_every_command_works_on_s3(cli: CliRunner, aws: MotoServer, tmp_path: Path) -> None:
    boto3.client("s3", endpoint_url=aws.endpoint_url).create_bucket(Bucket="steps")
    store = f"s3://steps?endpoint_url={aws.endpoint_url}"
    assert invoke(cli, "run", FLOW, "--workflow-id", "c1", "--store", store).exit_code == 0
    plan = as_json(invoke(cli, "plan", FLOW, "--workflow-id", "c1", "--store", store, "--json"))
    assert {s["decision"] for s in plan["steps"]} == {"skip"}  # type: ignore[index]
    ids = write_ids(tmp_path / "ids.txt", ["c1", "c2"])
    rerun = as_json(
        invoke(cli, "rerun", FLOW, "--ids", ids, "--store", store, "--no-progress", "--json")
    )
    assert rerun["steps"] == {"skipped": 5, "completed": 5}  # type: ignore[index]
    invoke(cli, "steps", "unmark", "--workflow-id", "c2", "export", "--yes", "--store", store)
    invoke(cli, "steps", "mark", "--workflow-id", "c2", "audit.done", "--store", store)
    listed = as_json(invoke(cli, "steps", "list", "--ids", ids, "--store", store, "--json"))
    assert listed == {
        "c1": sorted(STEPS),
        "c2": ["audit.done", "fetch.customers", "fetch.orders", "report.email"],
    }
    assert not Path(".asteps").exists()


def test_an_unknown_bucket_exits_3_with_what_to_check(cli: CliRunner, aws: MotoServer) -> None:
    result = invoke(
        cli,
        "steps",
        "list",
        "--workflow-id",
        "c1",
        "--store",
        f"s3://missing?endpoint_url={aws.endpoint_url}",
    )
    assert result.exit_code == 3
    assert "'missing'" in result.output
    assert "does not exist" in result.output


# -- demo -------------------------------------------------------------------------


def demo_runs(output: str) -> list[str]:
    return [line for line in output.splitlines() if " run: " in line]


def test_demo_shows_three_runs_executed_skipped_then_forced(cli: CliRunner, tmp_path: Path) -> None:
    result = invoke(cli, "demo", "--root", str(tmp_path / "store"))
    assert result.exit_code == 0, result.output
    assert len(demo_runs(result.stdout)) == 3
    first, second, third = result.stdout.split(" run: ")[1:]
    assert first.count("completed") >= 5
    assert "skipped" not in first.split("signals")[0]
    assert second.split("signals")[0].count("skipped") == 5
    table = third.split("signals")[0]
    for name in ("a.extract", "a.transform", "a.load"):
        row = next(line for line in table.splitlines() if f"│ {name} " in line)
        assert "completed" in row
        assert "a was fixed" in row
    assert "step.a.load" in third
    assert (tmp_path / "store" / "demo-workflow" / "steps" / "a.extract").is_file()


def test_demo_speaks_json(cli: CliRunner) -> None:
    runs = as_json(invoke(cli, "demo", "--json"))
    statuses = [[s["status"] for s in run["steps"]] for run in runs]  # type: ignore[union-attr]
    assert statuses[0] == ["completed"] * 5
    assert statuses[1] == ["skipped"] * 5
    assert statuses[2] == ["skipped", "completed", "completed", "completed", "completed"]
    assert runs[2]["signals"][1]["payload"]["reasons"] == ["a was fixed"]  # type: ignore[index]


def test_demo_runs_on_s3_through_moto(cli: CliRunner) -> None:
    result = invoke(cli, "demo", "--s3")
    assert result.exit_code == 0, result.output
    assert "S3Store('asteps-demo'" in result.stdout
    assert len(demo_runs(result.stdout)) == 3


def test_demo_on_s3_without_moto_says_an_install_command_that_exists(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.venv is made by uv, which puts no pip in it: the hint names moto itself."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real(name, *a)
    )
    result = invoke(cli, "demo", "--s3")
    assert result.exit_code == 2
    assert "pip install 'moto[server]'" in " ".join(result.stderr.split())
    assert ".venv/bin/pip" not in result.stderr


def test_ctrl_c_during_run_exits_130_without_marking_the_step(tmp_path: Path) -> None:
    flow = tmp_path / "slow.py"
    flow.write_text(
        "import anyio, pathlib\n"
        "async def flow(runner, **params):\n"
        "    await runner.step('quick', lambda: None)\n"
        "    pathlib.Path('started').touch()\n"
        "    await runner.step('slow', anyio.sleep_forever)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "asteps", "run", f"{flow}:flow", "--workflow-id", "w"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in stderr
    assert sorted(p.name for p in (tmp_path / ".asteps" / "w" / "steps").iterdir()) == ["quick"]


# -- ids from a slow pipe, signals during the drain, the retry file ------------------

QUICK_OR_STUCK = (
    "import anyio, pathlib\n"
    "async def flow(runner, **params):\n"
    "    async def work():\n"
    "        if runner.workflow_id.startswith('stuck'):\n"
    "            pathlib.Path('stuck-started').touch()\n"
    "            await anyio.sleep_forever()\n"
    "    await runner.step('only', work)\n"
)


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within 60 s"
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)


@pytest.fixture
def kill_later() -> Iterator[Callable[[subprocess.Popen[str]], subprocess.Popen[str]]]:
    """Kills the processes given to it after 60 s, so that a test that fails never hangs."""
    timers: list[threading.Timer] = []

    def watch(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
        timers.append(threading.Timer(60, process.kill))
        timers[-1].start()
        return process

    yield watch
    for timer in timers:
        timer.cancel()
        timer.function()  # type: ignore[call-arg]  (a process still running is killed)


def rerun_process(
    tmp_path: Path, flow: str, *args: str, stdin: int | None = None
) -> subprocess.Popen[str]:
    (tmp_path / "flow.py").write_text(flow)
    return subprocess.Popen(
        [sys.executable, "-m", "asteps", "rerun", f"{tmp_path / 'flow.py'}:flow", *args],
        cwd=tmp_path,
        env={**os.environ, "ASTEPS_STORE": f"file:{tmp_path / 'store'}"},
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ids_from_a_slow_pipe_run_as_they_arrive_and_ctrl_c_works_meanwhile(
    tmp_path: Path, kill_later: Callable[[Any], Any]
) -> None:
    process = kill_later(
        rerun_process(
            tmp_path,
            QUICK_OR_STUCK,
            "--ids",
            "-",
            "--concurrency",
            "4",
            "--failed-file",
            "left.txt",
            "--json",
            "--no-progress",
            stdin=subprocess.PIPE,
        )
    )
    assert process.stdin is not None
    process.stdin.write("w1\n")
    process.stdin.flush()
    wait_for(tmp_path / "store" / "w1" / "steps" / "only", process)  # before the pipe closes
    process.stdin.write("stuck\n")
    process.stdin.flush()
    wait_for(tmp_path / "stuck-started", process)
    process.send_signal(signal.SIGINT)  # the pipe is still open
    returncode = process.wait(timeout=60)
    stdout, stderr = process.communicate()
    assert returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["workflows"]["finished"] == 1
    assert (tmp_path / "left.txt").read_text() == "stuck\n"


STUCK_IN_A_THREAD = (
    "import pathlib, time\n"
    "def work():\n"
    "    pathlib.Path('stuck-started').touch()\n"
    "    while not pathlib.Path('release').exists():\n"
    "        time.sleep(0.01)\n"
    "async def flow(runner, **params):\n"
    "    await runner.step('only', work)\n"
)


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        (signal.SIGINT, signal.SIGINT, 130),
        (signal.SIGINT, signal.SIGTERM, 130),
        (signal.SIGTERM, signal.SIGINT, 143),
    ],
)
def test_a_second_signal_during_the_drain_keeps_the_summary_and_the_retry_file(
    tmp_path: Path,
    first: signal.Signals,
    second: signal.Signals,
    code: int,
    kill_later: Callable[[Any], Any],
) -> None:
    all_ids = [f"w{i}" for i in range(10)]
    ids = write_ids(tmp_path / "ids.txt", all_ids)
    process = kill_later(
        rerun_process(
            tmp_path,
            STUCK_IN_A_THREAD,
            "--ids",
            ids,
            "--concurrency",
            "2",
            "--failed-file",
            "left.txt",
            "--json",
            "--no-progress",
        )
    )
    wait_for(tmp_path / "stuck-started", process)
    process.send_signal(first)
    assert process.stderr is not None
    seen = ""
    while "interrupted" not in seen:  # the first signal was taken
        line = process.stderr.readline()
        assert line, f"stderr closed: {seen}"
        seen += line
    process.send_signal(second)  # the sync step still holds its thread
    while "stopping, writing the retry file" not in seen:
        line = process.stderr.readline()
        assert line, f"stderr closed before the second signal was acknowledged: {seen}"
        seen += line
    (tmp_path / "release").touch()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, seen + stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    left = (tmp_path / "left.txt").read_text().split()
    assert sorted(left) == sorted(summary["unfinished_ids"])
    assert summary["workflows"]["finished"] + len(left) + len(not_read(summary, all_ids)) == 10


async def deliver(interruption: Interruption, *signums: int) -> list[tuple[bool, bool]]:
    """Deliver ``signums`` to ``interruption`` one by one, as a running command's
    signal receiver does; after each, whether its ``stop`` and ``stop_now`` are
    set. Ends when the signals do, or when the command is cancelled."""
    stop, stop_now = anyio.Event(), anyio.Event()
    interruption.stop, interruption.stop_now = stop, stop_now  # as run_async does
    after: list[tuple[bool, bool]] = []

    async def received() -> AsyncIterator[int]:
        for signum in signums:
            await anyio.lowlevel.checkpoint()  # a receiver waits for each signal
            yield signum
            after.append((stop.is_set(), stop_now.is_set()))

    with anyio.CancelScope() as command:
        await interruption.watch(received(), command)
    return after


async def test_a_second_signal_to_a_draining_worker_stops_it_now_and_a_third_only_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    times = iter([0.0, 5.0, 9.0])  # the clock as each signal comes: seconds apart
    interruption = worker_interruption(drain=30, clock=lambda: next(times))

    after = await deliver(interruption, signal.SIGTERM, signal.SIGINT, signal.SIGINT)

    assert after == [(True, False), (True, True), (True, True)]  # (stop, stop_now)
    assert interruption.exit_code == 143  # the first signal's
    stopping_now = (
        "stopping now: running flows are being cancelled and handed back to SWF for "
        "another worker (nothing unfinished is marked done)…"
    )
    assert capsys.readouterr().err.splitlines() == [
        "interrupted: running flows get up to 30 s to finish; no new work is taken, and "
        "nothing unfinished is marked done (interrupt again to stop now)",
        stopping_now,
        stopping_now,
    ]


async def test_a_second_signal_right_after_the_first_is_the_same_stop_for_a_worker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Some process managers send two signals for one stop (a terminal's SIGINT
    to the process group, then their own SIGTERM): a signal within
    ``SAME_STOP_WITHIN`` of the first does not cut the drain short, and says
    so; one after it does."""
    times = iter([0.0, SAME_STOP_WITHIN / 10, SAME_STOP_WITHIN + 0.5])
    interruption = worker_interruption(drain=30, clock=lambda: next(times))

    after = await deliver(interruption, signal.SIGINT, signal.SIGTERM, signal.SIGINT)

    assert after == [(True, False), (True, False), (True, True)]  # (stop, stop_now)
    lines = capsys.readouterr().err.splitlines()
    assert lines[1] == (
        "a second signal within 1 s of the first is taken for the same stop; send another "
        "to stop now"
    )
    assert lines[2].startswith("stopping now: running flows are being cancelled")


@pytest.mark.parametrize(
    ("interruption", "after"),
    [
        # run, plan, steps ...: the first signal cancels the command, watching included
        (Interruption(), [(True, False)]),
        # rerun and swf submit: they stop themselves, and later signals only print
        (Interruption(cancels=False, later="stopping, writing the retry file…"),
         [(True, False)] * 3),
    ],
    ids=["cancels", "stops-itself"],
)  # fmt: skip
async def test_a_second_signal_to_any_other_command_sets_nothing_more(
    interruption: Interruption, after: list[tuple[bool, bool]]
) -> None:
    assert await deliver(interruption, signal.SIGINT, signal.SIGINT, signal.SIGTERM) == after


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigterm_stops_run_like_ctrl_c(tmp_path: Path, signum: signal.Signals, code: int) -> None:
    flow = tmp_path / "slow.py"
    flow.write_text(
        "import anyio, pathlib\n"
        "async def flow(runner, **params):\n"
        "    await runner.step('quick', lambda: None)\n"
        "    pathlib.Path('started').touch()\n"
        "    await runner.step('slow', anyio.sleep_forever)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "asteps", "run", f"{flow}:flow", "--workflow-id", "w"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(tmp_path / "started", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code
    assert "interrupted" in stderr
    assert sorted(p.name for p in (tmp_path / ".asteps" / "w" / "steps").iterdir()) == ["quick"]


def test_an_unwritable_retry_file_location_is_refused_before_the_batch(
    cli: CliRunner, tmp_path: Path
) -> None:
    ids = write_ids(tmp_path / "ids.txt", ["c1"])
    for location, message in [
        ("/nonexistent/dir/retry.txt", "'/nonexistent/dir' is not a directory"),
        (str(tmp_path), "is a directory"),
    ]:
        result = invoke(cli, "rerun", FLOW, "--ids", ids, "--failed-file", location)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert not Path(".asteps").exists()


def test_a_retry_file_that_cannot_be_written_at_the_end_goes_to_stderr(
    cli: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    flow = tmp_path / "vanish.py"
    flow.write_text(
        "import shutil\n"
        "async def flow(runner, **params):\n"
        "    shutil.rmtree('out', ignore_errors=True)\n"
        "    raise RuntimeError('always fails')\n"
    )
    ids = write_ids(tmp_path / "ids.txt", ["c1", "c2"])
    result = invoke(
        cli,
        "rerun",
        f"{flow}:flow",
        "--ids",
        ids,
        "--failed-file",
        "out/retry.txt",
        "--no-progress",
    )
    assert result.exit_code == 1
    assert "workflows failed" in result.stdout  # the summary
    assert "could not write the retry file out/retry.txt" in result.stderr
    assert sorted(result.stderr.split()[-2:]) == ["c1", "c2"]


async def test_the_retry_file_is_written_off_the_event_loop(tmp_path: Path) -> None:
    """A retry file on a file system that stalls (here a FIFO, whose writer waits
    for a reader) must not stop the event loop, and with it the signal handlers.

    The reader runs on the event loop: it can open the FIFO, and so let the
    write finish, only if the write does not hold the loop. Were it to hold
    it, a timer thread takes the ids after a minute, then ends the reader's
    wait, so that the test fails instead of hanging; a passing run never
    waits for that timer.
    """
    from rich.table import Table

    from asteps.cli.app import finish_batch

    fifo = tmp_path / "retry.txt"
    os.mkfifo(fifo)

    def take_the_ids_then_hang_up() -> None:
        fifo.read_bytes()
        fifo.open("wb").close()

    rescue = threading.Timer(60, take_the_ids_then_hang_up)
    rescue.daemon = True
    received = bytearray()

    async def read_on_the_loop() -> None:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    chunk = os.read(fd, 4096)
                except BlockingIOError:  # no writer has opened it yet
                    continue
                if not chunk:
                    return
                received.extend(chunk)
        finally:
            os.close(fd)

    rescue.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(finish_batch, {}, lambda _: Table(), ["c1", "c2"], fifo, "failed", True)
            tg.start_soon(read_on_the_loop)
    finally:
        rescue.cancel()
    assert bytes(received) == b"c1\nc2\n"


def test_input_is_shown_with_control_characters_escaped(cli: CliRunner, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"esc\x1b[31mred\nnul\x00x\nrtl\xe2\x80\xaex\n")
    rerun = invoke(cli, "rerun", FLOW, "--ids", str(ids), "--no-progress")
    assert rerun.exit_code == 1
    assert "esc\\x1b[31mred" in rerun.stdout
    assert "nul\\x00x" in rerun.stdout
    assert "rtl\\u202ex" in rerun.stdout
    flow = tmp_path / "loud.py"
    flow.write_text(
        "async def flow(runner, **params):\n"
        "    async def work():\n"
        "        raise RuntimeError('boom\\x1b[2J')\n"
        "    await runner.step('only', work)\n"
    )
    run = invoke(cli, "-v", "run", f"{flow}:flow", "--workflow-id", "w")
    assert run.exit_code == 1
    assert "boom\\x1b[2J" in run.stdout
    for output in (rerun.output, run.output):
        assert not any(c in output for c in "\x1b\x00\u202e")


def test_run_and_rerun_give_exit_3_when_markers_cannot_be_written(
    cli: CliRunner, tmp_path: Path
) -> None:
    ids = [f"c{i}" for i in range(8)]
    for wid in ids:  # a directory where the marker goes: listing works, writing fails
        (tmp_path / ".asteps" / wid / "steps" / "fetch.orders").mkdir(parents=True)
    run = invoke(cli, "run", FLOW, "--workflow-id", "c0")
    assert run.exit_code == 3
    rerun = invoke(
        cli, "rerun", FLOW, "--ids", write_ids(tmp_path / "ids.txt", ids), "--no-progress"
    )
    assert rerun.exit_code == 3
    assert rerun.stderr.count("could not be written") == 1  # one line, not one per workflow
    assert "rerun stopped: store failed" in rerun.stdout


# -- ids from the store: --all, --missing -------------------------------------------


def test_rerun_all_runs_every_workflow_with_a_marker_and_missing_chooses_among_them(
    cli: CliRunner, tmp_path: Path
) -> None:
    for wid in ("c1", "c2", "c3"):
        invoke(cli, "run", FLOW, "--workflow-id", wid, "--param", "delay=0")
    invoke(cli, "steps", "unmark", "--workflow-id", "c2", "export.csv", "--yes")
    Path(".asteps/empty").mkdir()  # a directory without a marker is no workflow

    missing = as_json(
        invoke(
            cli,
            "rerun",
            FLOW,
            "--all",
            "--missing",
            "export.csv",
            "--param",
            "delay=0",
            "--no-progress",
            "--json",
        )
    )
    assert missing["workflows"]["succeeded"] == 1  # type: ignore[index]
    assert missing["passed_over"] == 3  # type: ignore[index]  # c1, c3 and the empty one
    assert missing["steps"] == {"completed": 1, "skipped": 4}  # type: ignore[index]

    everything = as_json(
        invoke(cli, "rerun", FLOW, "--all", "--force", "report", "--no-progress", "--json")
    )
    assert everything["workflows"]["succeeded"] == 3  # type: ignore[index]
    assert everything["steps"] == {"completed": 3, "skipped": 12}  # type: ignore[index]


def test_missing_also_filters_an_ids_list(cli: CliRunner, tmp_path: Path) -> None:
    invoke(cli, "run", FLOW, "--workflow-id", "c1", "--param", "delay=0")
    ids = write_ids(tmp_path / "ids.txt", ["c1", "new"])
    summary = as_json(
        invoke(
            cli,
            "rerun",
            FLOW,
            "--ids",
            ids,
            "--missing",
            "report",
            "--dry-run",
            "--no-progress",
            "--json",
        )
    )
    assert summary["workflows"]["succeeded"] == 1  # type: ignore[index]  # "new" only
    assert summary["steps"] == {"would run": 5}  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all", "--ids", "-"], "exactly one of --ids FILE or --all"),
        ([], "exactly one of --ids FILE or --all"),
        (["--all", "--prefix", "steps/{workflow_id}/"], "must start with '{workflow_id}/'"),
        (["--all", "--missing", "bad..name"], "bad..name"),
    ],
)
def test_rerun_needs_ids_or_all_and_a_discoverable_template(
    cli: CliRunner, args: list[str], message: str
) -> None:
    result = invoke(cli, "rerun", FLOW, *args, "--no-progress")
    assert result.exit_code == 2
    assert message in result.stderr
    assert not Path(".asteps").exists()


def test_steps_list_all_lists_every_workflow_with_a_marker(cli: CliRunner) -> None:
    invoke(cli, "steps", "mark", "--workflow-id", "w1", "a", "b")
    invoke(cli, "steps", "mark", "--workflow-id", "w2", "c")
    invoke(cli, "steps", "mark", "--workflow-id", "w3", "d")
    invoke(cli, "steps", "unmark", "--workflow-id", "w3", "d", "--yes")
    assert as_json(invoke(cli, "steps", "list", "--all", "--json")) == {
        "w1": ["a", "b"],
        "w2": ["c"],
    }
    assert invoke(cli, "steps", "list", "--all", "--workflow-id", "w1").exit_code == 2


def test_rerun_all_and_steps_list_all_on_s3(cli: CliRunner, aws: MotoServer) -> None:
    boto3.client("s3", endpoint_url=aws.endpoint_url).create_bucket(Bucket="steps")
    store = f"s3://steps?endpoint_url={aws.endpoint_url}"
    for wid in ("c1", "c2"):
        invoke(cli, "run", FLOW, "--workflow-id", wid, "--store", store, "--param", "delay=0")
    listed = as_json(invoke(cli, "steps", "list", "--all", "--store", store, "--json"))
    assert listed == {"c1": sorted(STEPS), "c2": sorted(STEPS)}
    rerun = as_json(
        invoke(cli, "rerun", FLOW, "--all", "--store", store, "--no-progress", "--json")
    )
    assert rerun["steps"] == {"skipped": 10}  # type: ignore[index]


# -- versions of done steps, and the plan's reasons from marker bodies ---------------------


def write_marker(wid: str, name: str, body: dict[str, Any]) -> None:
    path = Path(".asteps") / wid / "steps" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))


def test_steps_list_versions_shows_each_steps_version_and_run_id(cli: CliRunner) -> None:
    write_marker("w1", "a", {"run_id": "r1", "workflow_id": "w1", "version": "1"})
    write_marker("w1", "b", {"run_id": "r2", "workflow_id": "w1", "version": None})
    listed = as_json(invoke(cli, "steps", "list", "--workflow-id", "w1", "--versions", "--json"))
    assert listed == {
        "w1": {"a": {"version": "1", "run_id": "r1"}, "b": {"version": None, "run_id": "r2"}}
    }
    table = invoke(cli, "steps", "list", "--workflow-id", "w1", "--versions").stdout
    row = next(line for line in table.splitlines() if "│ a " in line)
    assert "1" in row
    assert "r1" in row


def test_steps_list_versions_says_which_bodies_cannot_be_read(cli: CliRunner) -> None:
    write_marker("w1", "a", {"run_id": "r1", "workflow_id": "w1", "version": "1"})
    path = Path(".asteps") / "w1" / "steps" / "b"
    path.write_text("[1, 2]")  # JSON, but not a marker's body
    listed = invoke(cli, "steps", "list", "--workflow-id", "w1", "--versions")
    row = next(line for line in listed.stdout.splitlines() if "│ b " in line)
    assert "unreadable" in row  # not blank, as a marker without a version is
    assert "1 marker body could not be read: --json says why" in listed.stderr


def test_steps_list_versions_asks_before_reading_over_a_thousand_markers(
    cli: CliRunner,
) -> None:
    for i in range(1_001):
        write_marker("w1", f"s{i}", {"run_id": "r", "workflow_id": "w1", "version": "3"})
    refused = invoke(cli, "steps", "list", "--workflow-id", "w1", "--versions", input="n\n")
    assert refused.exit_code == 1
    assert "1,001 requests" in refused.stderr
    agreed = invoke(cli, "steps", "list", "--workflow-id", "w1", "--versions", "--yes", "--json")
    assert agreed.exit_code == 0
    assert len(as_json(agreed)["w1"]) == 1_001  # type: ignore[index]


def test_plan_shows_why_from_marker_bodies(cli: CliRunner, tmp_path: Path) -> None:
    flow = tmp_path / "kept.py"
    flow.write_text(
        "async def flow(runner, **_):\n"
        "    await runner.step('fetch', lambda: 1, keep_result=True)\n"
        "    await runner.step('build', lambda: 2, rerun_on_new_version=True)\n"
        "    await runner.step('kept', lambda: 3, keep_result=True)\n"
        "    await runner.step('plain', lambda: 4)\n"
    )
    assert invoke(cli, "run", f"{flow}:flow", "--workflow-id", "c1").exit_code == 0
    write_marker("c1", "fetch", {"run_id": "sf", "workflow_id": "c1", "version": None})
    write_marker("c1", "build", {"run_id": "old", "workflow_id": "c1", "version": "1"})
    plan = invoke(cli, "plan", f"{flow}:flow", "--workflow-id", "c1")
    lines = {line.split("│")[1].strip(): line for line in plan.stdout.splitlines() if "│" in line}
    assert "would run" in lines["fetch"]
    assert "result missing" in lines["fetch"]
    assert "would run" in lines["build"]
    assert "version 1 -> None" in lines["build"]
    assert "would skip" in lines["kept"]
    assert "already done (result kept)" in lines["kept"]
    assert "already done" in lines["plain"]
    assert "forced by the flow" not in plan.stdout


def test_flow_version_is_written_in_markers_and_a_new_one_reruns_the_steps_that_ask(
    cli: CliRunner, tmp_path: Path
) -> None:
    flow = tmp_path / "versioned.py"
    flow.write_text(
        "async def flow(runner, **_):\n"
        "    await runner.step('model', lambda: 1, rerun_on_new_version=True)\n"
        "    await runner.step('data', lambda: 2)\n"
    )
    first = invoke(cli, "run", f"{flow}:flow", "--workflow-id", "c1", "--flow-version", "1")
    assert first.exit_code == 0
    marker = json.loads((tmp_path / ".asteps" / "c1" / "steps" / "model").read_text())
    assert marker["version"] == "1"
    plan = invoke(cli, "plan", f"{flow}:flow", "--workflow-id", "c1", "--flow-version", "2")
    lines = {line.split("│")[1].strip(): line for line in plan.stdout.splitlines() if "│" in line}
    assert "would run" in lines["model"]
    assert "version 1 -> 2" in lines["model"]
    assert "would skip" in lines["data"]
    ids = tmp_path / "ids.txt"
    ids.write_text("c1\n")
    rerun = invoke(cli, "rerun", f"{flow}:flow", "--ids", str(ids), "--flow-version", "2")
    assert rerun.exit_code == 0
    marker = json.loads((tmp_path / ".asteps" / "c1" / "steps" / "model").read_text())
    assert marker["version"] == "2"


@pytest.mark.parametrize(
    ("stopped_at", "next_line", "ids_name", "says"),
    [
        ("line 1,235", 1235, "my ids.txt", "go on with: tail -n +1235 'my ids.txt'"),
        ("line 7", 7, "<stdin>", "at line 7 of the ids: the ids from there on were not read"),
        ("after workflow 'w9' of the store's listing", None, None, "after workflow 'w9'"),
    ],
)
def test_a_stopped_rerun_says_where_reading_stopped_and_how_to_go_on(
    stopped_at: str, next_line: int | None, ids_name: str | None, says: str
) -> None:
    from rich.console import Console

    from asteps._batch import BatchSummary
    from asteps.cli.rerun import _summary_table

    summary = BatchSummary(interrupted=True, stopped_at=stopped_at, next_line=next_line)
    console = Console(width=300, record=True)
    console.print(_summary_table(summary, None, ids_name=ids_name))
    assert says in console.export_text()


def test_the_rerun_summary_shows_an_id_that_is_not_utf8_as_its_bytes() -> None:
    from rich.console import Console

    from asteps._batch import BatchSummary
    from asteps.cli.rerun import _summary_table

    wid = b"bad-\xff".decode("utf-8", "surrogateescape")  # as an ids file gives it
    summary = BatchSummary(failed=1, failed_ids=[wid], errors={wid: "line 3 is not UTF-8"})
    console = Console(width=300, record=True)
    console.print(_summary_table(summary, None))
    (row,) = [line for line in console.export_text().splitlines() if "line 3" in line]
    assert "bad-\\xff" in row


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1bb", "a\\x1bb"),  # a C0 control: below 0x80, the same as its byte
        ("a\x85b", "a\\u0085b"),  # a C1 control, a character: not the byte 0x85
        (b"a\x85b".decode("utf-8", "surrogateescape"), "a\\x85b"),  # the byte 0x85
        ("a\u202eb", "a\\u202eb"),
    ],
)
def test_input_shown_in_a_terminal_tells_a_byte_from_a_character(text: str, shown: str) -> None:
    from asteps.cli._output import printable

    assert printable(text) == shown


async def test_the_rerun_progress_bar_reaches_its_total_when_ids_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bar counted finished workflows only: an id repeated while in flight
    left it short of the ids counted in the file (2/4 here)."""
    import io

    from rich.console import Console

    import asteps.cli.rerun as rerun_cli
    from asteps import BatchRun, MemoryStore, Runner

    shown = io.StringIO()  # not a terminal: the bar is printed once, as it ends
    monkeypatch.setattr(rerun_cli, "err", lambda: Console(file=shown, width=200))
    release = anyio.Event()

    async def flow(runner: Runner, **_: Any) -> None:
        await release.wait()

    async def release_when_all_read() -> None:
        await anyio.wait_all_tasks_blocked()  # "a" in flight, its repeats read
        release.set()

    with rerun_cli._progress(4, True) as show:
        run = BatchRun(flow, MemoryStore(), concurrency=4, on_workflow=lambda r, s: show(s))
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_when_all_read)
            summary = await run.run(["a", "a", "b", "a"])
        show(summary)  # as the CLI does once the batch ends
    assert (summary.finished, summary.repeated) == (2, 2)
    assert "4/4" in shown.getvalue()


def test_the_rerun_summary_counts_ids_repeated_while_in_flight() -> None:
    from rich.console import Console

    from asteps._batch import BatchSummary
    from asteps.cli.rerun import _summary_table

    console = Console(width=300, record=True)
    console.print(_summary_table(BatchSummary(succeeded=3, repeated=1_200), None))
    (row,) = [line for line in console.export_text().splitlines() if "repeated ids" in line]
    assert "1,200 (each run once at a time)" in row
    console = Console(width=300, record=True)
    console.print(_summary_table(BatchSummary(succeeded=3), None))
    assert "repeated" not in console.export_text()


@pytest.mark.parametrize(("failed", "says"), [(14, "every reason"), (1_005, "the first 1,000")])
def test_the_rerun_summary_says_how_many_reasons_json_gives(failed: int, says: str) -> None:
    """The batch keeps the reasons of its first 1,000 failures only: past
    those, the summary does not promise every reason in --json."""
    from rich.console import Console

    from asteps._batch import KEPT_FAILURES, BatchSummary
    from asteps.cli.rerun import _summary_table

    kept = min(failed, KEPT_FAILURES)
    summary = BatchSummary(
        failed=failed, errors={f"w{i}": "upstream returned HTTP 503" for i in range(kept)}
    )
    console = Console(width=300, record=True)
    console.print(_summary_table(summary, Path("retry.txt")))
    assert f"--json gives {says}" in console.export_text()


def test_rerun_refuses_a_bad_store_url_before_it_counts_ids_or_shows_progress(
    tmp_path: Path,
) -> None:
    """The store URL is checked with the other options: a typo in it costs no
    pass over a big ids file, and no progress bar comes before the error."""
    write_ids(tmp_path / "ids.txt", [f"customer-{i}" for i in range(1005)])
    done = asteps_process("rerun", FLOW, "--ids", "ids.txt", "--store", "bogus://x", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "store URL 'bogus://x' is not understood" in done.stderr
    assert "1005" not in done.stderr, done.stderr  # no progress bar was drawn
    assert list(tmp_path.iterdir()) == [tmp_path / "ids.txt"]  # nothing written


@pytest.mark.parametrize("quiet", [["--no-progress"], ["--log-format", "json"]])
def test_rerun_counts_the_ids_only_for_a_progress_bar(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: list[str]
) -> None:
    """The count of a big ids file is a whole pass over it, for the bar's total
    and ETA alone: without a bar, nothing would use it."""
    import asteps.cli.rerun

    counted: list[object] = []
    monkeypatch.setattr(asteps.cli.rerun, "count_ids", lambda *a, **kw: counted.append(a))
    write_ids(tmp_path / "ids.txt", ["a", "b"])
    result = invoke(cli, "rerun", FLOW, "--ids", "ids.txt", "--param", "delay=0", *quiet)
    assert result.exit_code == 0, result.output
    assert counted == []
    result = invoke(cli, "rerun", FLOW, "--ids", "ids.txt", "--param", "delay=0")
    assert result.exit_code == 0, result.output
    assert len(counted) == 1  # with the bar, as before


def test_ctrl_c_during_the_count_of_the_ids_does_not_wait_for_it(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count (a pass over the whole file, seconds for millions of ids)
    is abandoned at Ctrl-C: this one cannot end before the command has, and
    Ctrl-C comes while it runs. Waited for, it would end first (when its
    generous bound runs out) and the test would fail."""
    import asteps.cli.rerun

    release, returned = threading.Event(), threading.Event()

    def count_until_released(*args: object, **kwargs: object) -> int:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, while counting
        release.wait(60)
        returned.set()
        return 2

    monkeypatch.setattr(asteps.cli.rerun, "count_ids", count_until_released)
    write_ids(tmp_path / "ids.txt", ["a", "b"])
    try:
        result = invoke(cli, "rerun", FLOW, "--ids", "ids.txt", "--param", "delay=0")
        assert not returned.is_set()  # the command ended while the count still ran
    finally:
        release.set()
    assert result.exit_code == 130, result.output
