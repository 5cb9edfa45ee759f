"""BatchRun: one flow over many workflows, streamed, bounded, interruptible."""

from __future__ import annotations

import io
from typing import Any

import anyio
import pytest
from aiobotocore.config import AioConfig

from asteps import MemoryStore, Runner, S3Store
from asteps._batch import (
    MAX_LINE_BYTES,
    BadId,
    BatchRun,
    BatchSummary,
    WorkflowReport,
    read_ids,
)

from .conftest import FailingMarkStore, FlakyProxy


async def one_step(runner: Runner, **_: Any) -> None:
    await runner.step("only", lambda: None)


def test_ids_are_read_without_blanks_or_comments() -> None:
    assert list(read_ids(io.BytesIO(b"a\n  b  \r\n\n# note\nc"))) == ["a", "b", "c"]


def test_an_undecodable_or_over_long_line_is_one_bad_id_naming_its_line() -> None:
    lines = b"a\nbad-\xff\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nb\n"
    ids = list(read_ids(io.BytesIO(lines)))
    assert ids[0] == "a"
    assert ids[-1] == "b"
    undecodable, too_long = ids[1], ids[2]
    assert isinstance(undecodable, BadId)
    assert "line 2" in undecodable.reason
    assert "UTF-8" in undecodable.reason
    assert undecodable.text.encode("utf-8", "surrogateescape") == b"bad-\xff"  # retried as is
    assert isinstance(too_long, BadId)
    assert f"line 3 is longer than {MAX_LINE_BYTES} bytes" in too_long.reason


def test_only_ascii_whitespace_is_stripped_from_an_id() -> None:
    assert list(read_ids(io.BytesIO("  a\u2028 \n".encode()))) == ["a\u2028"]


async def test_a_bad_line_fails_as_one_workflow_and_the_others_run() -> None:
    store = MemoryStore()
    summary = await BatchRun(one_step, store).run(read_ids(io.BytesIO(b"a\n\xff\nb\n")))
    assert summary.succeeded == 2
    assert len(summary.failed_ids) == 1
    assert "line 2" in summary.errors[summary.failed_ids[0]]


async def test_each_id_runs_once_and_bad_ids_fail_without_io() -> None:
    store = MemoryStore()
    summary = await BatchRun(one_step, store, concurrency=3).run(["a", "b", "a", "x/y", "c"])
    assert summary.succeeded == 3
    assert summary.failed_ids == ["x/y"]
    assert "'/'" in summary.errors["x/y"]
    assert sorted(store.objects) == ["a/steps/only", "b/steps/only", "c/steps/only"]


async def test_never_more_workflows_in_flight_than_the_concurrency() -> None:
    running = peak = 0

    async def flow(runner: Runner, **_: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001)
        running -= 1

    summary = await BatchRun(flow, MemoryStore(), concurrency=4).run(f"w{i}" for i in range(50))
    assert summary.succeeded == 50
    assert peak == 4


async def test_a_stop_cancels_in_flight_workflows_and_lists_the_rest() -> None:
    stop = anyio.Event()
    finished: list[str] = []

    async def flow(runner: Runner, **_: Any) -> None:
        if runner.workflow_id == "w5":
            stop.set()
        await runner.step("slow", anyio.sleep_forever if runner.workflow_id >= "w5" else _noop)
        finished.append(runner.workflow_id)

    store = MemoryStore()
    summary = await BatchRun(flow, store, concurrency=2).run(
        [f"w{i}" for i in range(10)], stop=stop
    )
    assert summary.interrupted
    assert summary.succeeded == len(finished)
    assert sorted(summary.unfinished_ids) == sorted(
        f"w{i}" for i in range(10) if f"w{i}" not in finished
    )
    assert all(not key.startswith(tuple(summary.unfinished_ids)) for key in store.objects)


async def _noop() -> None:
    pass


async def test_a_store_that_fails_mid_batch_stops_it_with_a_resumable_summary(
    flaky: FlakyProxy,
) -> None:
    reports: list[WorkflowReport] = []

    def on_workflow(report: WorkflowReport, summary: BatchSummary) -> None:
        reports.append(report)
        if len(reports) == 1:
            flaky.fail_next(10**6, method="GET")  # from now on every listing fails

    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    async with S3Store("steps", endpoint_url=flaky.endpoint_url, client_config=config) as store:
        await store.client.create_bucket(Bucket="steps")
        batch = BatchRun(one_step, store, concurrency=5, on_workflow=on_workflow)
        summary = await batch.run(f"w{i:02d}" for i in range(40))
    assert summary.aborted is not None
    assert "cannot list bucket 'steps'" in summary.aborted
    assert summary.finished >= 1
    assert summary.finished + len(summary.unfinished_ids) == 40
    assert not set(summary.unfinished_ids) & {r.workflow_id for r in reports}


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_must_be_positive(concurrency: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchRun(one_step, MemoryStore(), concurrency=concurrency)


# -- bookkeeping after a stop, and a store that cannot write ----------------------


async def test_a_stopped_batch_lists_exactly_the_ids_that_did_not_finish() -> None:
    stop = anyio.Event()

    async def flow(runner: Runner, **_: Any) -> None:
        if runner.workflow_id == "stopper":
            stop.set()
            await anyio.sleep_forever()

    # "done" finishes and "x/y" fails before the stop; both come again later
    ids = ["done", "x/y", "stopper", "later", "done", "x/y", "later"]
    summary = await BatchRun(flow, MemoryStore(), concurrency=1).run(ids, stop=stop)
    assert summary.interrupted
    assert summary.succeeded == 1
    assert summary.failed_ids == ["x/y"]
    assert summary.unfinished_ids == ["stopper", "later"]


async def test_a_marker_write_failure_stops_the_batch_like_a_listing_failure() -> None:
    summary = await BatchRun(one_step, FailingMarkStore(), concurrency=2).run(
        f"w{i:02d}" for i in range(20)
    )
    assert summary.aborted is not None
    assert "disk full" in summary.aborted
    assert 1 <= len(summary.failed_ids) <= 2  # the workflows that hit it first
    assert len(summary.failed_ids) + len(summary.unfinished_ids) == 20
