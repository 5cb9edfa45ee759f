"""BatchRun: one flow over many workflows, streamed, bounded, interruptible. On
asyncio and on trio, but for S3 (aioboto3 is asyncio only)."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from aiobotocore.config import AioConfig

from asteps import (
    Chain,
    Group,
    InvalidStepName,
    MemoryStore,
    Runner,
    S3Store,
    StoreError,
    run_workflow,
)
from asteps._batch import (
    KEPT_FAILURES,
    MAX_LINE_BYTES,
    MAX_REASONS,
    OTHER_REASONS,
    BadId,
    BatchRun,
    BatchSummary,
    IdReader,
    WorkflowReport,
    read_ids,
)
from asteps._shards import Shard
from asteps.testing import LatencyStore

from .conftest import CountingStore, FailingMarkStore, FlakyProxy

pytestmark = pytest.mark.anyio


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


async def test_a_byte_order_mark_at_the_start_of_an_ids_file_is_not_part_of_the_first_id(
    tmp_path: Path,
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbfa\r\nb\n\xef\xbb\xbfc\n")
    with ids.open("rb") as stream:
        reader = IdReader(stream)
        reader.start()
        store = MemoryStore()
        summary = await BatchRun(one_step, store).run(reader)
    assert summary.succeeded == 2  # only the first line's mark is one
    assert summary.failed_ids == ["\ufeffc"]
    assert sorted(store.objects) == ["a/steps/only", "b/steps/only"]


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
    # How far the listers read ahead before the stop is the scheduler's affair
    # (trio runs ready tasks in no set order): every id read is finished or
    # unfinished, and none after them was read.
    ids = [f"w{i}" for i in range(10)]
    read = ids_read(summary, len(ids))
    assert sorted(summary.unfinished_ids) == sorted(w for w in ids[:read] if w not in finished)
    assert "w5" in summary.unfinished_ids
    assert all(not key.startswith(tuple(summary.unfinished_ids)) for key in store.objects)


async def _noop() -> None:
    pass


def ids_read(summary: BatchSummary, given: int) -> int:
    """How many of the ``given`` ids a stopped batch read, from where it stopped."""
    if summary.stopped_at is None:  # every id was read
        return given
    return int(summary.stopped_at.removeprefix("after ").removesuffix(" ids"))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # S3Store: aioboto3 is asyncio only
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
    read = summary.finished + len(summary.unfinished_ids)
    assert summary.stopped_at == f"after {read} ids"  # the others were not read
    assert sorted(summary.unfinished_ids + [r.workflow_id for r in reports]) == [
        f"w{i:02d}" for i in range(read)
    ]


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_must_be_positive(concurrency: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchRun(one_step, MemoryStore(), concurrency=concurrency)


# -- bookkeeping after a stop, and a store that cannot write ----------------------


async def test_a_stopped_batch_lists_exactly_the_ids_that_did_not_finish() -> None:
    stop = anyio.Event()

    async def flow(runner: Runner, **_: Any) -> None:
        if runner.workflow_id == "stopper":
            await anyio.wait_all_tasks_blocked()  # the listers have read all they may
            stop.set()
            await anyio.sleep_forever()

    # "done" finishes and "x/y" fails before the stop; "done" comes again: a
    # repeat after its run finished is new work, and, read, it is unfinished
    ids = ["done", "x/y", "stopper", "later", "done", "x/y", "later"]
    summary = await BatchRun(flow, MemoryStore(), concurrency=1).run(ids, stop=stop)
    assert summary.interrupted
    assert summary.succeeded == 1
    assert summary.failed_ids == ["x/y"]
    # in flight, waiting for the worker, being listed; nothing after it is read
    assert summary.unfinished_ids == ["stopper", "later", "done"]
    assert summary.stopped_at == "after 5 ids"


async def test_a_marker_write_failure_stops_the_batch_like_a_listing_failure() -> None:
    summary = await BatchRun(one_step, FailingMarkStore(), concurrency=2).run(
        f"w{i:02d}" for i in range(20)
    )
    assert summary.aborted is not None
    assert "disk full" in summary.aborted
    assert 1 <= len(summary.failed_ids) <= 2  # the workflows that hit it first
    read = len(summary.failed_ids) + len(summary.unfinished_ids)
    assert read <= 3 * 2  # in flight, listed, being listed: the rest is not read
    assert summary.stopped_at == f"after {read} ids"


async def test_a_failing_report_callback_stops_the_batch_with_its_summary() -> None:
    # A callback that writes each report somewhere (a file, a queue) and
    # cannot: the batch stops and says why and for which workflow, its
    # summary in hand.
    reported: list[str] = []
    failing: list[str] = []

    def on_workflow(report: WorkflowReport, summary: BatchSummary) -> None:
        reported.append(report.workflow_id)
        if len(reported) == 3:
            failing.append(report.workflow_id)
            raise OSError("reports file: disk full")

    ids = [f"w{i:02d}" for i in range(20)]
    summary = await BatchRun(one_step, MemoryStore(), concurrency=2, on_workflow=on_workflow).run(
        ids
    )
    assert summary.aborted is not None
    assert "disk full" in summary.aborted
    assert f"reporting {failing[0]} failed" in summary.aborted
    assert summary.succeeded == len(reported) >= 3
    read = summary.succeeded + len(summary.unfinished_ids)
    assert summary.stopped_at == f"after {read} ids"
    assert read < len(ids)


@pytest.mark.parametrize("together", [Group, Chain], ids=["group", "chain without a break"])
async def test_a_store_failure_under_steps_awaited_together_is_the_workflows_store_error(
    together: Any,
) -> None:
    # The docs' own example flows await their steps in a Group: the store's
    # failure comes out in an exception group, and is still the store's (the
    # CLI exits 3 with its message; a batch stops).
    class Unlistable(MemoryStore):
        async def list_done(self, prefix: str) -> set[str]:
            raise StoreError("cannot list: the disk is gone", prefix=prefix)

    async def flow(runner: Runner, **_: Any) -> None:
        async def a() -> None: ...

        options = {} if together is Group else {"break_on_failure": False}
        await together((runner.step, "a", a), (runner.step, "b", a), **options)

    report = await run_workflow(flow, Runner(Unlistable(), "w1"), {})
    assert not report.ok
    assert isinstance(report.store_error, StoreError)
    assert "the disk is gone" in str(report.store_error)


# -- no chunk barrier: each workflow starts on its own listing ---------------------


class OneSlowListing(MemoryStore):
    """Lists w0's prefix only once the batch has finished a later workflow:
    a batch that waited for a chunk of listings would never get there."""

    def __init__(self, release_after: str) -> None:
        super().__init__()
        self.release_after = release_after
        self.released = anyio.Event()

    async def list_done(self, prefix: str) -> set[str]:
        if prefix == "w0/steps/":
            await self.released.wait()
        return await super().list_done(prefix)


async def test_a_slow_listing_holds_up_its_own_workflow_only() -> None:
    store = OneSlowListing(release_after="w7")
    order: list[str] = []

    async def flow(runner: Runner, **_: Any) -> None:
        await runner.step("only", lambda: None)
        order.append(runner.workflow_id)
        if runner.workflow_id == store.release_after:
            store.released.set()

    with anyio.fail_after(10):
        summary = await BatchRun(flow, store, concurrency=4).run(f"w{i}" for i in range(10))
    assert summary.succeeded == 10
    assert order.index("w7") < order.index("w0")  # w0 finished after later ids


class ListingsInFlight(MemoryStore):
    """Counts the listings in flight at once; each takes a little while."""

    def __init__(self) -> None:
        super().__init__()
        self.listing = self.peak = 0

    async def list_done(self, prefix: str) -> set[str]:
        self.listing += 1
        self.peak = max(self.peak, self.listing)
        try:
            await anyio.sleep(0.002)
            return await super().list_done(prefix)
        finally:
            self.listing -= 1


async def test_never_more_listings_in_flight_than_the_concurrency() -> None:
    store = ListingsInFlight()
    summary = await BatchRun(one_step, store, concurrency=3).run(f"w{i}" for i in range(40))
    assert summary.succeeded == 40
    assert store.peak == 3


async def test_ids_are_read_ahead_only_a_bounded_number() -> None:
    read = 0

    def ids() -> Any:
        nonlocal read
        for i in range(10_000):
            read += 1
            yield f"w{i}"

    async def flow(runner: Runner, **_: Any) -> None:
        await anyio.sleep_forever()  # until the stop

    stop = anyio.Event()
    read_when_stopped = 0

    async def stop_when_full() -> None:
        nonlocal read_when_stopped
        await anyio.wait_all_tasks_blocked()  # the pipeline is full: it reads no more
        read_when_stopped = read
        stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_full)
        summary = await BatchRun(flow, MemoryStore(), concurrency=4).run(ids(), stop=stop)
    # 4 running, 4 listed and waiting for a worker, 4 listed and waiting to hand over
    assert read_when_stopped == 3 * 4
    assert read == 3 * 4  # a stop reads no further
    assert summary.stopped_at == "after 12 ids"
    assert len(summary.unfinished_ids) == 12


async def test_an_id_that_comes_again_while_in_flight_never_runs_twice() -> None:
    runs: list[str] = []
    release = anyio.Event()

    async def flow(runner: Runner, **_: Any) -> None:
        runs.append(runner.workflow_id)
        await release.wait()

    async def release_when_all_read() -> None:
        await anyio.wait_all_tasks_blocked()  # "a" in flight, its repeats read
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_when_all_read)
        summary = await BatchRun(flow, MemoryStore(), concurrency=4).run(["a", "a", "b", "a"])
    assert sorted(runs) == ["a", "b"]
    assert summary.succeeded == 2
    # Each id read is accounted for: two ran, two were repeats of one in flight.
    assert summary.repeated == 2
    assert summary.as_dict()["repeated"] == 2


async def test_an_id_that_comes_again_after_it_finished_costs_one_listing_and_skips() -> None:
    store = CountingStore()
    finished = anyio.Event()

    async def ids() -> Any:
        yield "a"
        await finished.wait()  # "a" is done with: nothing remembers it
        yield "a"

    def on_workflow(report: WorkflowReport, summary: BatchSummary) -> None:
        finished.set()

    run = BatchRun(one_step, store, concurrency=2, on_workflow=on_workflow)
    summary = await run.run(ids())
    assert store.calls["list_done"] == 2
    assert store.calls["mark_done"] == 1
    assert summary.steps == {"completed": 1, "skipped": 1}


async def test_a_summary_keeps_counts_and_the_first_failures_only() -> None:
    failed: list[str] = []

    def on_workflow(report: WorkflowReport, summary: BatchSummary) -> None:
        if not report.ok:
            failed.append(report.workflow_id)

    ids = [f"bad/{i}" for i in range(KEPT_FAILURES + 5)]
    summary = await BatchRun(one_step, MemoryStore(), on_workflow=on_workflow).run(ids)
    assert summary.failed == summary.finished == KEPT_FAILURES + 5
    assert summary.failed_ids == ids[:KEPT_FAILURES]
    assert len(summary.errors) == KEPT_FAILURES
    assert failed == ids  # every one told as it failed


async def test_workflows_run_at_the_store_limit_under_exponential_latency() -> None:
    """Not a timing assertion: the store is saturated, i.e. the batch keeps
    max_in_flight calls in flight, which a chunk barrier cannot do."""
    store = LatencyStore(latency=0.005, distribution="exponential", max_in_flight=8, seed=1)
    for i in range(200):
        await store.inner.mark_done(f"w{i}/steps/", "only", {})
    summary = await BatchRun(one_step, store, concurrency=8).run(f"w{i}" for i in range(200))
    assert summary.steps == {"skipped": 200}
    assert store.calls == {"list_done": 200}
    assert store.peak_in_flight == 8


# -- choosing workflows by their done steps -----------------------------------------


async def test_missing_runs_only_the_workflows_where_a_pattern_covers_no_done_step() -> None:
    store = MemoryStore()
    await store.mark_done("has-csv/steps/", "export.csv", {})
    await store.mark_done("has-parquet/steps/", "export.parquet", {})
    await store.mark_done("has-both/steps/", "export.csv", {})
    await store.mark_done("has-both/steps/", "export.parquet", {})
    ran: list[str] = []

    async def flow(runner: Runner, **_: Any) -> None:
        ran.append(runner.workflow_id)

    ids = ["has-csv", "has-parquet", "has-both", "new"]
    summary = await BatchRun(flow, store, missing=["export.csv"]).run(ids)
    assert sorted(ran) == ["has-parquet", "new"]
    assert (summary.succeeded, summary.passed_over) == (2, 2)

    ran.clear()
    either = await BatchRun(flow, store, missing=["export.csv", "export.parquet"]).run(ids)
    assert sorted(ran) == ["has-csv", "has-parquet", "new"]
    assert either.passed_over == 1

    ran.clear()
    await BatchRun(flow, store, missing=["export"], only_with_markers=True).run(ids)
    assert ran == []  # "export" covers a done step of each; "new" has none at all


async def test_the_ids_reader_wakes_the_event_loop_only_when_a_get_waits(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"w{i}\n" for i in range(10_000)))
    wakes = 0
    wake = IdReader._wake

    def counted(self: IdReader, *args: Any) -> None:
        nonlocal wakes
        wakes += 1
        wake(self, *args)

    monkeypatch.setattr(IdReader, "_wake", counted)
    with path.open("rb") as stream:
        reader = IdReader(stream, buffer=256)
        reader.start()
        got = 0
        while await reader.get() is not None:
            got += 1
    assert got == 10_000
    # Ids are handed over 128 at a time (half the buffer), and the loop is woken
    # at most once a hand-over, however the thread and the loop interleave:
    # before, a waiting get() cost a thread hop per id.
    assert wakes <= 10_000 // 128 + 2


async def test_an_over_long_line_goes_to_the_retry_ids_as_a_line_that_fails_again() -> None:
    # Never a shortened stand-in, which could be a valid id of another workflow.
    store = MemoryStore()
    lines = b"a\n" + b"x" * 5000 + b"\n"
    summary = await BatchRun(one_step, store).run(read_ids(io.BytesIO(lines)))
    (bad,) = summary.failed_ids
    again = list(read_ids(io.BytesIO(bad.encode("utf-8", "surrogateescape") + b"\n")))
    assert len(again) == 1
    assert isinstance(again[0], BadId)
    assert set(store.objects) == {"a/steps/only"}


@pytest.mark.parametrize(
    "prefix",
    ["shared/", "steps/{workflow_id}"],
    ids=["no id", "id not followed by /"],
)
async def test_a_batch_refuses_a_prefix_that_does_not_give_each_workflow_its_own(
    prefix: str,
) -> None:
    # With "steps/{workflow_id}", w1's step "2export" would be w12's "export".
    store = CountingStore()

    async def flow(runner: Runner, **_: Any) -> None:
        await runner.step("export", lambda: None)

    with pytest.raises(InvalidStepName, match=r"does not hold \{workflow_id\}/"):
        await BatchRun(flow, store, prefix=prefix).run(["w1", "w12"])
    assert store.calls == Counter()


async def test_one_workflow_may_use_any_prefix() -> None:
    store = MemoryStore()

    async def flow(runner: Runner, **_: Any) -> None:
        await runner.step("export", lambda: None)

    report = await BatchRun(flow, store, prefix="shared/").run_one("w1")
    assert report.ok
    assert await store.list_done("shared/") == {"export"}


# -- a stop costs what is in flight, not the ids left (issue 23) ------------------


async def test_a_stop_reads_no_further_and_says_the_line_to_go_on_from(tmp_path: Path) -> None:
    ids = [f"w{i:05d}" for i in range(50_000)]
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"{wid}\n" for wid in ids))
    stop = anyio.Event()
    ran: list[str] = []

    async def flow(runner: Runner, **_: Any) -> None:
        ran.append(runner.workflow_id)
        if len(ran) == 10:
            stop.set()
        await runner.step("only", anyio.sleep_forever if len(ran) >= 10 else _noop)

    with path.open("rb") as stream:
        reader = IdReader(stream, buffer=16)
        reader.start()
        summary = await BatchRun(flow, MemoryStore(), concurrency=4).run(reader, stop=stop)
    line = summary.next_line
    assert line is not None
    assert summary.stopped_at == f"line {line:,}"
    # Every id before that line finished or is in the retry file; none after it is.
    finished = set(ran) - set(summary.unfinished_ids)
    assert sorted(finished | set(summary.unfinished_ids)) == ids[: line - 1]
    assert len(summary.unfinished_ids) <= 2 * 4 + 16  # in flight, listed, buffered


async def test_a_stop_after_the_last_line_was_read_has_no_line_to_go_on_from() -> None:
    stop = anyio.Event()

    async def flow(runner: Runner, **_: Any) -> None:
        stop.set()
        await anyio.sleep_forever()

    reader = IdReader(io.BytesIO(b"a\nb\n"), buffer=16)
    reader.start()
    summary = await BatchRun(flow, MemoryStore(), concurrency=4).run(reader, stop=stop)
    assert sorted(summary.unfinished_ids) == ["a", "b"]
    assert (summary.stopped_at, summary.next_line) == (None, None)


async def test_a_stop_accounts_for_every_id_read_ahead_other_shards_and_repeats_too() -> None:
    """The ids in the reader's buffer at a stop are counted as the batch counts
    them: another shard's in ``other_shards``, a repeat of an unfinished id in
    ``repeated``, the others unfinished; so that every id read is accounted
    for, and the counts of a batch stopped and resumed add up to its ids."""
    shard = Shard(0, 2)
    names = [f"w{i}" for i in range(40)]
    mine = [w for w in names if shard.holds(w)][:6]
    theirs = [w for w in names if not shard.holds(w)][:6]
    lines = [mine[0], *theirs, mine[0], *mine[1:], *mine[1:], *theirs]
    stop = anyio.Event()

    async def flow(runner: Runner, **_: Any) -> None:
        stop.set()
        await anyio.sleep_forever()

    # One chunk: every line is in the reader's buffer before the first id is taken.
    reader = IdReader(io.BytesIO("".join(f"{w}\n" for w in lines).encode()), buffer=64)
    reader.start()
    summary = await BatchRun(flow, MemoryStore(), concurrency=1, shard=shard).run(reader, stop=stop)
    assert summary.interrupted
    assert summary.stopped_at is None  # every line was read
    assert sorted(summary.unfinished_ids) == sorted(mine)
    assert summary.other_shards == len(lines) - 2 * len(mine)
    assert summary.repeated == len(mine)
    accounted = (
        summary.finished
        + summary.passed_over
        + summary.repeated
        + summary.other_shards
        + len(summary.unfinished_ids)
    )
    assert accounted == len(lines)


# -- run always returns its summary (issue 24) -----------------------------------


class _BrokenDisk(io.RawIOBase):
    """A stream whose disk fails after its first bytes, as a bad sector would."""

    def __init__(self) -> None:
        self._given = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._given:
            raise OSError(5, "Input/output error")
        self._given = True
        data = b"a\nb\n"
        buffer[: len(data)] = data
        return len(data)


async def test_an_io_error_reading_the_ids_stops_the_batch_with_its_summary() -> None:
    reader = IdReader(_BrokenDisk(), buffer=16)  # type: ignore[arg-type]
    reader.start()
    summary = await BatchRun(one_step, MemoryStore()).run(reader)
    assert summary.unreadable is not None
    assert "reading the ids failed: OSError" in summary.unreadable
    assert "Input/output error" in summary.unreadable
    assert summary.succeeded + len(summary.unfinished_ids) == 2
    assert summary.aborted is None


async def test_an_iterator_of_ids_that_raises_stops_the_batch_with_its_summary() -> None:
    def ids() -> Any:
        yield "a"
        raise ValueError("the ids database went away")

    summary = await BatchRun(one_step, MemoryStore()).run(ids())
    assert summary.unreadable == "reading the ids failed: ValueError: the ids database went away"
    assert summary.succeeded + len(summary.unfinished_ids) == 1


# -- a dry run says why (issue 21) ------------------------------------------------


async def kept_and_versioned(runner: Runner, **_: Any) -> None:
    await runner.step("a", lambda: 1, keep_result=int)
    await runner.step("b", lambda: None, rerun_on_new_version=True)


async def test_a_dry_run_counts_why_steps_would_run_over_the_batch() -> None:
    store = MemoryStore()
    await store.mark_done("w2/steps/", "a", {"version": "2"})  # no result
    await store.mark_done("w2/steps/", "b", {"version": "1"})
    await store.mark_done("w3/steps/", "a", {"version": "2", "result": 5})
    await store.mark_done("w3/steps/", "b", {"version": "2"})
    batch = BatchRun(kept_and_versioned, store, dry_run=True, version="2")
    summary = await batch.run(["w1", "w2", "w3"])
    assert summary.steps == {"would run": 4, "would skip": 2}
    assert summary.run_reasons == {"not done": 2, "result missing": 1, "version 1 -> 2": 1}
    assert summary.as_dict()["run_reasons"] == {
        "not done": 2,
        "result missing": 1,
        "version 1 -> 2": 1,
    }


async def test_forced_steps_count_the_reason_given_or_the_pattern() -> None:
    store = MemoryStore()
    plain = await BatchRun(one_step, store, dry_run=True, force=["only"]).run(["w1"])
    assert plain.run_reasons == {"forced by only": 1}
    told = BatchRun(one_step, store, dry_run=True, force=["only"], reason="template changed")
    assert (await told.run(["w1"])).run_reasons == {"template changed": 1}


async def test_the_reasons_told_apart_are_bounded_and_cut_short() -> None:
    store = MemoryStore()
    for i in range(MAX_REASONS + 10):
        await store.mark_done(f"w{i}/steps/", "b", {"version": f"v{i}" * (1 + 100 * (i == 0))})

    async def versioned(runner: Runner, **_: Any) -> None:
        await runner.step("b", lambda: None, rerun_on_new_version=True)

    batch = BatchRun(versioned, store, dry_run=True, version="2")
    summary = await batch.run([f"w{i}" for i in range(MAX_REASONS + 10)])
    assert len(summary.run_reasons) == MAX_REASONS + 1
    assert summary.run_reasons[OTHER_REASONS] == 10
    assert sum(summary.run_reasons.values()) == summary.steps["would run"] == MAX_REASONS + 10
    assert max(len(reason) for reason in summary.run_reasons) < 200
