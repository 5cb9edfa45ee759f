"""A stopped `swf submit` (Ctrl-C, SIGTERM, SWF refusing) reads no further ids:
it costs what is in flight, not what is left, and says the line to go on from,
as a stopped `rerun` does (issue 20, point 23)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
from rich.console import Console

from asteps._batch import IdReader
from asteps.cli.swf import _submit_table
from asteps.swf import prepare, submit
from asteps.swf._submit import SubmitSummary
from asteps.testing import MotoServer

from .swf_processes import DOMAIN, FLOW, cli_env, until

PARAMS = {"log": "/dev/null"}


def write_ids(path: Path, count: int) -> list[str]:
    ids = [f"w{i:05d}" for i in range(count)]
    path.write_text("".join(f"{wid}\n" for wid in ids))
    return ids


async def test_a_stop_reads_no_further_and_says_the_line_to_go_on_from(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    ids = write_ids(tmp_path / "ids.txt", 50_000)
    stop = anyio.Event()

    def on_id(wid: str, outcome: str, summary: SubmitSummary) -> None:
        if summary.started == 10:
            stop.set()

    with (tmp_path / "ids.txt").open("rb") as stream:
        reader = IdReader(stream, buffer=16)
        reader.start()
        summary = await submit(
            prepare(FLOW, params=PARAMS),
            reader,
            domain=DOMAIN,
            concurrency=4,
            rps=1000,
            stop=stop,
            on_id=on_id,
            session=aws.session(),
            endpoint_url=aws.endpoint_url,
        )

    assert summary.interrupted
    line = summary.next_line
    assert line is not None
    assert summary.stopped_at == f"line {line:,}"
    # Every id before that line was started or is in the retry ids; none after it is.
    tried = [*summary.started_ids, *summary.already_running_ids, *summary.refused]
    assert sorted([*tried, *summary.unfinished]) == ids[: line - 1]
    assert len(summary.unfinished) <= 2 * 4 + 1 + 16  # channel, starters, feeder, buffer
    assert summary.as_dict()["next_line"] == line


async def test_a_stop_after_the_last_line_was_read_has_no_line_to_go_on_from(
    aws: MotoServer, domain: str
) -> None:
    stop = anyio.Event()
    stop.set()
    reader = IdReader(io.BytesIO(b"a\nb\n"), buffer=16)
    reader.start()
    await until(lambda: reader._ended)  # the reader thread has read both lines
    summary = await submit(
        prepare(FLOW, params=PARAMS),
        reader,
        domain=DOMAIN,
        stop=stop,
        session=aws.session(),
        endpoint_url=aws.endpoint_url,
    )
    assert summary.interrupted
    assert (summary.stopped_at, summary.next_line) == (None, None)
    assert sorted([*summary.started_ids, *summary.unfinished]) == ["a", "b"]


async def test_a_stop_on_a_pipe_held_open_returns_without_waiting_for_its_end(
    aws: MotoServer, domain: str
) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"p1\np2\n")  # and the writer never closes it
    stop = anyio.Event()

    def on_id(wid: str, outcome: str, summary: SubmitSummary) -> None:
        stop.set()

    try:
        with os.fdopen(read_end, "rb", buffering=0) as stream:
            reader = IdReader(stream, buffer=16)
            reader.start()
            with anyio.fail_after(30):
                summary = await submit(
                    prepare(FLOW, params=PARAMS),
                    reader,
                    domain=DOMAIN,
                    concurrency=1,
                    stop=stop,
                    on_id=on_id,
                    session=aws.session(),
                    endpoint_url=aws.endpoint_url,
                )
    finally:
        os.close(write_end)
    assert summary.interrupted
    assert summary.next_line == 3
    assert sorted([*summary.started_ids, *summary.unfinished]) == ["p1", "p2"]


def test_the_summary_table_says_how_to_go_on() -> None:
    summary = SubmitSummary(interrupted=True, stopped_at="line 1,235", next_line=1235)
    console = Console(width=300, record=True)
    console.print(_submit_table(summary, None, ids_name="my ids.txt"))
    text = console.export_text()
    assert "swf submit interrupted" in text
    assert "go on with: tail -n +1235 'my ids.txt'" in text


def test_the_summary_table_counts_repeated_ids() -> None:
    console = Console(width=300, record=True)
    console.print(_submit_table(SubmitSummary(repeated=1_200), None))
    (row,) = [line for line in console.export_text().splitlines() if "repeated ids" in line]
    assert "1,200 (each started once)" in row


def start_asteps(aws: MotoServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "asteps", *args],
        env=cli_env(aws),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_ctrl_c_on_the_command_writes_the_ids_read_and_the_line_to_go_on_from(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    ids = write_ids(tmp_path / "ids.txt", 50_000)
    retry = tmp_path / "retry.txt"
    args = ["swf", "submit", FLOW, "--domain", DOMAIN, "--ids", str(tmp_path / "ids.txt")]
    args += ["--param", "log=/dev/null", "--rps", "20", "--json", "--failed-file", str(retry)]
    process = start_asteps(aws, *args, "--no-progress")
    try:
        async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:

            async def some_started() -> bool:
                page = await client.list_open_workflow_executions(
                    domain=DOMAIN, startTimeFilter={"oldestDate": 0}
                )
                return len(page["executionInfos"]) >= 3

            with anyio.fail_after(60):
                while not await some_started():
                    assert process.poll() is None, process.stderr
                    await anyio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = await anyio.to_thread.run_sync(lambda: process.communicate(timeout=60))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    summary = json.loads(out)
    line = summary["next_line"]
    assert line is not None
    assert summary["stopped_at"] == f"line {line:,}"
    assert summary["unfinished"] <= 2 * 16 + 1 + 16 * 4  # a stop costs what is in flight
    retried = retry.read_text().splitlines() if summary["unfinished"] else []
    assert retried == summary["unfinished_ids"]
    assert set(retried) <= set(ids[: line - 1])
