"""The runner: the semantics of simpleflow's Steps, natively in async Python. On
asyncio and on trio, but for S3 (aioboto3 is asyncio only)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from asteps import (
    Chain,
    EventBus,
    FileStore,
    InvalidPrefix,
    InvalidStepName,
    MarkDoneError,
    Marker,
    MemoryStore,
    Runner,
    S3Store,
    Step,
    StepOptions,
)
from asteps._decision import ALREADY_PLAYED

from .conftest import CountingStore, FailingMarkStore, PrefixCheckingStore

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


class HeldListingStore(CountingStore):
    """A counting MemoryStore whose listing waits until the test lets it go, as a
    slow remote store's would: ``listing`` is set when a listing starts."""

    def __init__(self) -> None:
        super().__init__()
        self.listing = anyio.Event()
        self.let_go = anyio.Event()

    async def list_done(self, prefix: str) -> set[str]:
        self.listing.set()
        await self.let_go.wait()
        return await super().list_done(prefix)


def recorder() -> tuple[list[str], Any]:
    ran: list[str] = []

    def make(name: str, result: Any = None) -> Any:
        async def activity() -> Any:
            ran.append(name)
            return result

        return activity

    return ran, make


async def test_a_step_runs_once_then_is_skipped_on_later_runs(store: CountingStore) -> None:
    ran, make = recorder()
    first = await Runner(store, "wf").step("export.csv", make("export", 42))
    second = await Runner(store, "wf").step("export.csv", make("export"))

    assert ran == ["export"]
    assert (first.status, first.forced, list(first.reasons), first.result) == (
        "completed",
        False,
        [],
        42,
    )
    assert (second.status, second.forced, list(second.reasons)) == (
        "skipped",
        False,
        [ALREADY_PLAYED],
    )


async def test_done_markers_use_simpleflows_key_and_body() -> None:
    store = MemoryStore()
    runner = Runner(store, "wf-1", run_id="run-9", version="v2")
    await runner.step("a.b", lambda: None)
    assert store.objects == {
        "wf-1/steps/a.b": {"run_id": "run-9", "workflow_id": "wf-1", "version": "v2"}
    }


async def test_executed_step_records_scheduled_then_completed_markers(store: CountingStore) -> None:
    runner = Runner(store, "wf")
    await runner.step("a", lambda: None)
    await runner.step("a", lambda: None)
    assert runner.markers == [
        Marker("log.step", {"step": "a", "status": "scheduled", "forced": False, "reasons": []}),
        Marker("log.step", {"step": "a", "status": "completed", "forced": False, "reasons": []}),
        Marker(
            "log.step",
            {"step": "a", "status": "skipped", "forced": False, "reasons": [ALREADY_PLAYED]},
        ),
    ]


async def test_forcing_a_prefix_reruns_its_descendants_with_reasons(store: CountingStore) -> None:
    ran, make = recorder()
    for name in ("a", "a.b", "a.b.c", "ab"):
        await Runner(store, "wf").step(name, make(name))
    ran.clear()

    runner = Runner(store, "wf")
    runner.add_forced_steps("a", reason="customer asked")
    outcomes = [await runner.step(n, make(n)) for n in ("a", "a.b", "a.b.c", "ab")]

    assert ran == ["a", "a.b", "a.b.c"]
    assert [(o.status, o.forced, list(o.reasons)) for o in outcomes] == [
        ("completed", True, ["customer asked"]),
        ("completed", True, ["customer asked"]),
        ("completed", True, ["customer asked"]),
        ("skipped", False, [ALREADY_PLAYED]),
    ]


async def test_star_skips_everything_and_force_beats_skip(store: CountingStore) -> None:
    ran, make = recorder()
    runner = Runner(store, "wf")
    runner.add_skipped_steps("*", reason="maintenance")
    runner.add_forced_steps(["b"], reason="hotfix")
    a = await runner.step("a", make("a"))
    b = await runner.step("b.x", make("b.x"))
    assert ran == ["b.x"]
    assert (a.status, a.forced, list(a.reasons)) == ("skipped", True, ["maintenance"])
    assert (b.status, b.forced, list(b.reasons)) == ("completed", True, ["hotfix"])
    assert runner.get_forced_steps() == ["b"]
    assert runner.get_skipped_steps() == ["*"]


async def test_the_force_argument_runs_a_done_step(store: CountingStore) -> None:
    ran, make = recorder()
    await Runner(store, "wf").step("a", make("a"))
    outcome = await Runner(store, "wf").step("a", make("a"), force=True)
    assert ran == ["a", "a"]
    assert (outcome.status, outcome.forced) == ("completed", True)


async def test_an_executed_step_forces_its_dependents_with_a_reason(store: CountingStore) -> None:
    ran, make = recorder()
    for name in ("a", "report", "report.pdf"):
        await Runner(store, "wf").step(name, make(name))
    ran.clear()

    runner = Runner(store, "wf")
    await runner.step("a", make("a"), force=True, force_steps_if_executed=["report"])
    pdf = await runner.step("report.pdf", make("report.pdf"))
    assert ran == ["a", "report.pdf"]
    assert (pdf.forced, list(pdf.reasons)) == (True, ["Dep of a"])


async def test_a_skipped_step_does_not_force_its_dependents(store: CountingStore) -> None:
    _ran, make = recorder()
    await Runner(store, "wf").step("a", make("a"))
    await Runner(store, "wf").step("b", make("b"))
    runner = Runner(store, "wf")
    await runner.step("a", make("a"), force_steps_if_executed=["b"])
    outcome = await runner.step("b", make("b"))
    assert outcome.status == "skipped"
    assert runner.get_forced_steps() == []


async def test_dependents_are_forced_before_the_steps_activities_start(
    store: CountingStore,
) -> None:
    await Runner(store, "wf").step("b", lambda: None)
    runner = Runner(store, "wf")
    seen: list[list[str]] = []

    async def a() -> None:
        seen.append(runner.get_forced_steps())

    await runner.step("a", a, force_steps_if_executed=["b"])
    assert seen == [["b"]]


async def test_skipped_steps_run_their_alternative_activities(store: CountingStore) -> None:
    ran, make = recorder()
    await Runner(store, "wf").step("a", make("a"))
    outcome = await Runner(store, "wf").step(
        "a", make("a"), activities_if_step_already_done=make("alt", "cached")
    )
    assert ran == ["a", "alt"]
    assert (outcome.status, outcome.result) == ("skipped", "cached")


async def test_a_failed_step_is_not_marked_and_sends_no_signal(
    store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    async def fails() -> None:
        raise Boom("no route to db")

    runner = Runner(store, "wf")
    async with runner.bus.subscribe("step") as signals:
        outcome = await runner.step("a", fails, emit_signal=True)
        assert signals.receive_nowait_all() == []

    assert outcome.status == "failed"
    assert isinstance(outcome.error, Boom)
    assert store.objects == {}
    assert runner.markers[-1].details == {
        "step": "a",
        "status": "failed",
        "forced": False,
        "reasons": [],
        "error": "Boom: no route to db",
    }
    assert any(
        r.levelno >= logging.WARNING and "no route to db" in r.message for r in caplog.records
    )
    assert (await Runner(store, "wf").step("a", lambda: "ok")).status == "completed"


async def test_a_failure_bubbles_only_when_asked(store: CountingStore) -> None:
    async def fails() -> None:
        raise Boom("x")

    runner = Runner(store, "wf")
    with pytest.raises(Boom):
        await runner.step("a", fails, bubbles_exception_on_failure=True)
    assert runner.markers[-1].details["status"] == "failed"
    assert [(o.name, o.status) for o in runner.outcomes] == [("a", "failed")]
    with pytest.raises(Boom):
        await runner.submit(Step("a", fails, bubbles_exception_on_failure=True))


async def test_cancellation_propagates_and_never_marks_the_step(store: CountingStore) -> None:
    started = anyio.Event()

    async def slow() -> None:
        started.set()
        await anyio.sleep(60)

    runner = Runner(store, "wf")
    finished: list[str] = []

    async def step() -> None:
        await runner.step("a", slow)
        finished.append("a")  # never: the cancellation goes through the step

    async with anyio.create_task_group() as tg:
        tg.start_soon(step)
        await started.wait()
        tg.cancel_scope.cancel()
    assert tg.cancel_scope.cancelled_caught
    assert finished == []
    assert store.objects == {}
    assert "a" not in await runner.steps_done()


async def test_a_marker_that_cannot_be_written_raises_with_the_result_in_hand() -> None:
    runner = Runner(FailingMarkStore(), "wf")
    with pytest.raises(MarkDoneError) as info:
        await runner.step("a", lambda: {"rows": 10})
    assert info.value.result == {"rows": 10}
    assert isinstance(info.value.__cause__, OSError)
    assert "'a'" in str(info.value)
    assert "wf/steps/" in str(info.value)
    assert runner.markers[-1].details["status"] == "failed"
    assert runner.outcomes[-1].result == {"rows": 10}
    assert isinstance(runner.outcomes[-1].error, MarkDoneError)
    assert "a" not in await runner.steps_done()


async def test_step_signals_are_published_for_runs_and_skips(store: CountingStore) -> None:
    bus = EventBus()
    async with bus.subscribe("step") as signals:
        await Runner(store, "wf", run_id="r1", bus=bus).step("a.b", lambda: 1, emit_signal=True)
        await Runner(store, "wf", run_id="r2", bus=bus).step("a.b", lambda: 1, emit_signal=True)
        await Runner(store, "wf", run_id="r3", bus=bus).step("quiet", lambda: 1)
        got = signals.receive_nowait_all()
    assert [(s.name, s.payload) for s in got] == [
        (
            "step.a.b",
            {
                "workflow_id": "wf",
                "run_id": "r1",
                "step": "a.b",
                "status": "completed",
                "forced": False,
                "reasons": [],
            },
        ),
        (
            "step.a.b",
            {
                "workflow_id": "wf",
                "run_id": "r2",
                "step": "a.b",
                "status": "skipped",
                "forced": False,
                "reasons": [ALREADY_PLAYED],
            },
        ),
    ]


async def test_every_marker_is_published_as_log_step(store: CountingStore) -> None:
    runner = Runner(store, "wf")
    async with runner.bus.subscribe("log.step") as log:
        await runner.step("a", lambda: None)
        payloads = [s.payload for s in log.receive_nowait_all()]
    assert payloads == [m.details for m in runner.markers]
    assert [p["status"] for p in payloads] == ["scheduled", "completed"]


async def test_concurrent_steps_share_one_listing_and_decide_in_order() -> None:
    store = HeldListingStore()
    await store.mark_done("wf/steps/", "b", {})  # done by an earlier run
    store.calls.clear()
    runner = Runner(store, "wf")
    outcomes: dict[str, Any] = {}

    async def act(name: str) -> None:
        pass

    async def step(name: str, **options: Any) -> None:
        outcomes[name] = await runner.step(name, (act, name), **options)

    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(step, "a", force_steps_if_executed=["b"]))
        await store.listing.wait()  # "a" lists the store
        tg.start_soon(step, "b")  # submitted after "a"
        for i in range(50):
            tg.start_soon(step, f"c{i}")
        await anyio.wait_all_tasks_blocked()  # all wait for that listing
        store.let_go.set()
    assert store.calls["list_done"] == 1
    assert outcomes["b"].status == "completed"
    assert list(outcomes["b"].reasons) == ["Dep of a"]
    assert store.calls["mark_done"] == 52
    assert await runner.steps_done() == frozenset({"a", "b", *(f"c{i}" for i in range(50))})
    assert store.calls["list_done"] == 1


async def test_a_failed_listing_is_retried_by_the_next_step() -> None:
    class Flaky(MemoryStore):
        attempts = 0

        async def list_done(self, prefix: str) -> set[str]:
            self.attempts += 1
            if self.attempts == 1:
                raise ConnectionError("try again")
            return await super().list_done(prefix)

    runner = Runner(Flaky(), "wf")
    with pytest.raises(ConnectionError):
        await runner.step("a", lambda: None)
    assert (await runner.step("a", lambda: None)).status == "completed"


async def test_the_prefix_template_sees_workflow_id_and_context() -> None:
    store = MemoryStore()
    runner = Runner(store, "wf", prefix="{tenant}/{workflow_id}/done/", context={"tenant": "acme"})
    await runner.step("a", lambda: None)
    assert list(store.objects) == ["acme/wf/done/a"]


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.step("bad name", lambda: None),
        lambda r: r.step("*", lambda: None),
        lambda r: r.step("ok", lambda: None, force_steps_if_executed=["bad..dep"]),
        lambda r: r.submit(Step("a..b", lambda: None)),
    ],
)
async def test_bad_names_fail_before_any_io(store: CountingStore, call: Any) -> None:
    runner = Runner(store, "wf")
    with pytest.raises(InvalidStepName):
        await call(runner)
    assert sum(store.calls.values()) == 0
    assert runner.markers == []


@pytest.mark.parametrize("call", ["add_forced_steps", "add_skipped_steps"])
def test_bad_patterns_are_refused(store: CountingStore, call: str) -> None:
    runner = Runner(store, "wf")
    with pytest.raises(InvalidStepName):
        getattr(runner, call)(["ok", "not ok"])
    assert getattr(runner, call.replace("add", "get"))() == []


def test_bad_workflow_ids_are_refused_at_construction(store: CountingStore) -> None:
    with pytest.raises(InvalidStepName, match="'/'"):
        Runner(store, "a/b")


async def test_steps_accept_chains_and_groups_as_activities(store: CountingStore) -> None:
    async def n(i: int) -> int:
        return i

    from asteps import Group

    outcome = await Runner(store, "wf").step("a", Chain((n, 1), Group((n, 2), (n, 3))))
    assert outcome.result == [1, [2, 3]]


async def test_a_dry_run_decides_against_the_real_done_list_and_writes_nothing(
    store: CountingStore,
) -> None:
    await Runner(store, "wf").step("a", lambda: None)
    store.calls.clear()
    ran, make = recorder()
    runner = Runner(store, "wf", dry_run=True)
    runner.add_forced_steps("b", reason="why not")
    outcomes = [
        await runner.step("a", make("a"), emit_signal=True),
        await runner.step("b", make("b"), force_steps_if_executed=["c"]),
        await runner.step("c", make("c")),
    ]
    assert ran == []
    assert [(o.status, o.decision, list(o.reasons)) for o in outcomes] == [
        ("planned", "skip", [ALREADY_PLAYED]),
        ("planned", "run", ["why not"]),
        ("planned", "run", ["Dep of b"]),
    ]
    assert dict(store.calls) == {"list_done": 1}
    assert runner.markers == []


async def test_a_prefetched_done_list_skips_the_listing(store: CountingStore) -> None:
    runner = Runner(store, "wf", done={"a"})
    assert (await runner.step("a", lambda: None)).status == "skipped"
    assert store.calls["list_done"] == 0


async def test_outcomes_are_frozen_dataclasses_that_share_the_decisions_reasons(
    store: CountingStore,
) -> None:
    runner = Runner(store, "wf")
    done = await runner.step("a", lambda: {"rows": 3})
    skipped = await runner.step("a", lambda: None)
    assert dataclasses.asdict(done) == {
        "name": "a",
        "status": "completed",
        "forced": False,
        "reasons": (),
        "result": {"rows": 3},
        "error": None,
        "decision": "run",
        "patterns": (),
        "duration": done.duration,
        "attempts": 1,
    }
    assert skipped.reasons == (ALREADY_PLAYED,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        skipped.status = "failed"  # type: ignore[misc]
    copy = dataclasses.replace(done, status="failed")
    assert (copy.status, done.status) == ("failed", "completed")


def test_a_step_model_validates_its_names_however_it_is_built() -> None:
    from pydantic import ValidationError

    assert Step("a.b", lambda: None, force_steps_if_executed=None).force_steps_if_executed == []
    with pytest.raises(InvalidStepName):
        Step(name="a b", activities=lambda: None)
    with pytest.raises(ValidationError, match="empty segment"):
        Step.model_validate({"name": "a..b", "activities": None})
    with pytest.raises(ValidationError, match="pattern"):
        Step.model_validate({"name": "a", "activities": None, "force_steps_if_executed": ["x y"]})


async def test_a_step_submitted_while_others_wait_for_the_listing_decides_after_them() -> None:
    store = HeldListingStore()
    await store.mark_done("wf/steps/", "c", {})
    runner = Runner(store, "wf")

    async def a_then_c() -> None:
        # Submitted after "b" (which waited for the listing "a" started).
        outcome = await runner.step("c", lambda: None)
        seen.append((outcome.name, outcome.status, list(outcome.reasons)))

    seen: list[tuple[str, str, list[str]]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.step, "a", a_then_c)
        await store.listing.wait()  # "a" lists the store
        tg.start_soon(
            functools.partial(runner.step, "b", lambda: None, force_steps_if_executed=["c"])
        )
        await anyio.wait_all_tasks_blocked()  # "b" waits for that listing
        store.let_go.set()
    # "b" was submitted before "c", so its dependents are forced before "c" is decided.
    assert seen == [("c", "completed", ["Dep of b"])]


async def test_cancelling_one_step_during_the_listing_leaves_the_others_running() -> None:
    store = HeldListingStore()
    runner = Runner(store, "wf")
    ran: list[str] = []
    optional_scope = anyio.CancelScope()

    async def work(name: str) -> None:
        ran.append(name)

    async def optional() -> None:
        with optional_scope:
            await runner.step("optional", (work, "optional"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(optional)
        await store.listing.wait()  # "optional" lists the store
        tg.start_soon(runner.step, "main", (work, "main"))
        await anyio.wait_all_tasks_blocked()  # "main" waits for that listing
        optional_scope.cancel()  # cut off during the listing: "main" lists again
        await anyio.wait_all_tasks_blocked()
        store.let_go.set()

    assert optional_scope.cancelled_caught
    assert ran == ["main"]
    assert [o.name for o in runner.outcomes] == ["main"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # S3Store: aioboto3 is asyncio only
async def test_cancelling_one_step_on_s3_leaves_the_others_running(aws: Any) -> None:
    listing = anyio.Event()

    class Listing(S3Store):
        async def list_done(self, prefix: str) -> set[str]:
            listing.set()
            return await super().list_done(prefix)

    optional_scope = anyio.CancelScope()
    async with Listing("steps", endpoint_url=aws.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        runner = Runner(store, "wf")

        async def optional() -> None:
            with optional_scope:
                await runner.step("optional", lambda: None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(optional)
            tg.start_soon(runner.step, "main", lambda: None)
            await listing.wait()  # "optional" is listing S3, "main" waits behind it
            optional_scope.cancel()
        # Cut off during its request to S3 (or, were S3 that fast, during its
        # activity's thread): never marked, and "main" went on.
        assert [o.name for o in runner.outcomes] == ["main"]
        assert await store.list_done("wf/steps/") == {"main"}


async def test_a_sync_activity_whose_step_was_cancelled_is_not_marked_done() -> None:
    store = MemoryStore()
    runner = Runner(store, "wf", done=())
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_sync() -> str:
        started.set()
        release.wait()  # a thread cannot be interrupted: it finishes anyway
        finished.set()
        return "late"

    scope = anyio.CancelScope()

    async def step() -> None:
        with scope:
            await runner.step("sync", slow_sync)

    async with anyio.create_task_group() as tg:
        tg.start_soon(step)
        await anyio.to_thread.run_sync(started.wait)
        scope.cancel()  # while the thread runs
        release.set()
    assert scope.cancelled_caught
    assert finished.is_set()
    assert await store.list_done("wf/steps/") == set()
    assert [m.details["status"] for m in runner.markers] == ["scheduled"]


@pytest.mark.parametrize("kind", ["memory", "file"])
@pytest.mark.parametrize("how", ["shielded", "cancels its caller"])
async def test_a_step_cancelled_as_its_activities_return_is_not_marked_done(
    kind: str, how: str, tmp_path: Any
) -> None:
    # The activities return after the step's scope was cancelled, with no await
    # in between to deliver it: the step checks before it writes its marker,
    # whatever the store (MemoryStore's write never awaits).
    store = MemoryStore() if kind == "memory" else FileStore(tmp_path)
    runner = Runner(store, "wf", done=())
    scope = anyio.CancelScope()
    started, release = anyio.Event(), anyio.Event()

    async def shielded() -> str:
        with anyio.CancelScope(shield=True):
            started.set()
            await release.wait()
        return "done, but its step was cancelled"

    async def cancels_its_caller() -> str:
        scope.cancel()
        return "done, but its step was cancelled"

    async def step() -> None:
        with scope:
            await runner.step("s", shielded if how == "shielded" else cancels_its_caller)

    async with anyio.create_task_group() as tg:
        tg.start_soon(step)
        if how == "shielded":
            await started.wait()
            scope.cancel()
            release.set()
    assert scope.cancelled_caught
    assert await store.list_done("wf/steps/") == set()
    assert [m.details["status"] for m in runner.markers] == ["scheduled"]
    assert runner.outcomes == []


@contextlib.contextmanager
def fails_if_the_loop_never_yields(seconds: float = 60) -> Iterator[None]:
    """Fail, rather than hang, if the event loop spins without ever awaiting: no
    cancel scope can interrupt code that never awaits, and a signal can."""

    def fail(signum: int, frame: Any) -> None:
        raise AssertionError(f"the event loop did not yield for {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


async def test_a_step_cancelled_while_another_step_reads_its_body_hands_the_queue_on() -> None:
    # "t" keeps its result and has dependents, so its marker's body is read in
    # its turn, before the steps behind it decide. "w" is queued behind it and
    # works through the queue, reading t's body for it; "t" is cancelled meanwhile.
    class Held(HeldListingStore):
        def __init__(self) -> None:
            super().__init__()
            self.reading, self.read_on = anyio.Event(), anyio.Event()

        async def read_marker(self, prefix: str, name: str) -> Any:
            self.reading.set()
            await self.read_on.wait()
            return await super().read_marker(prefix, name)

    store = Held()
    await Runner(store, "wf", done=[]).step("t", lambda: "kept", keep_result=True)
    runner = Runner(store, "wf")
    t_scope = anyio.CancelScope()
    seen: list[str] = []

    async def submits_w() -> None:
        # Runs as soon as the listing pass decided "l", before "t" wakes: "w"
        # queues behind "t" and, nobody else deciding, works the queue.
        seen.append((await runner.step("w", lambda: None)).status)

    async def t() -> None:
        with t_scope:
            await runner.step("t", lambda: None, keep_result=True, force_steps_if_executed=["y"])

    with fails_if_the_loop_never_yields():
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.step, "l", submits_w)
                await store.listing.wait()  # "l" lists the store
                tg.start_soon(t)
                await anyio.wait_all_tasks_blocked()  # "t" waits for that listing
                store.let_go.set()
                await store.reading.wait()  # "w" reads t's body, for "t"
                t_scope.cancel()
                await anyio.wait_all_tasks_blocked()
                store.read_on.set()
    assert t_scope.cancelled_caught
    assert seen == ["completed"]  # "w" was decided, and ran
    assert [o.name for o in runner.outcomes] == ["w", "l"]


async def test_a_step_cancelled_once_decided_in_the_listing_pass_is_decided_again_later() -> None:
    store = HeldListingStore()
    runner = Runner(store, "wf")
    b_scope = anyio.CancelScope()
    ran: list[str] = []

    async def b() -> None:
        with b_scope:
            await runner.step("b", (ran.append, "b"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.step, "a", lambda: None)
        await store.listing.wait()  # "a" lists the store
        tg.start_soon(b)
        await anyio.wait_all_tasks_blocked()  # "b" waits for that listing
        # In one go: the listing pass decides "b" (run), and "b" is cancelled
        # before it wakes to run.
        store.let_go.set()
        b_scope.cancel()
    assert b_scope.cancelled_caught
    assert ran == []
    # Not left in flight: a later call of "b" decides again, and runs it.
    with anyio.fail_after(60):
        outcome = await runner.step("b", (ran.append, "b"))
    assert (outcome.status, ran) == ("completed", ["b"])
    assert "b" in await store.list_done("wf/steps/")


def test_a_steps_options_are_declared_once_for_step_runner_step_and_submit() -> None:
    assert set(StepOptions.__annotations__) == set(Step.model_fields) - {"name", "activities"}
    step = Step("a", lambda: None, emit_signal=True, force_steps_if_executed=["b"])
    assert step.options() == {
        "force": False,
        "activities_if_step_already_done": None,
        "emit_signal": True,
        "force_steps_if_executed": ["b"],
        "bubbles_exception_on_failure": False,
        "keep_result": False,
        "on_missing_result": "run",
        "rerun_on_new_version": False,
        "exclusive": None,
        "retry": None,
        "time_limit": None,
    }


async def test_a_step_started_in_a_cancelled_scope_neither_runs_nor_is_marked() -> None:
    # The done list is known and nothing else is deciding, and the activity
    # never awaits, and MemoryStore never waits: only the step's own check for
    # cancellation, before it decides, can stop it.
    store = MemoryStore()
    runner = Runner(store, "wf", done=[])
    ran: list[str] = []

    async def never_awaits() -> None:
        ran.append("s")

    async with anyio.create_task_group() as tg:
        tg.cancel_scope.cancel()
        tg.start_soon(runner.step, "s", never_awaits)
    assert ran == []
    assert await store.list_done("wf/steps/") == set()


@pytest.mark.parametrize("option", ["emit_signals", "timeout", "retries"])
async def test_a_misspelt_option_is_a_type_error_before_anything_runs(
    store: CountingStore, option: str
) -> None:
    ran: list[str] = []

    async def work() -> None:
        ran.append("x")

    coroutine = work()
    with pytest.raises(TypeError, match=rf"unknown step option '{option}': the options are"):
        await Runner(store, "wf").step("s", coroutine, **{option: True})  # type: ignore[arg-type]
    assert ran == []
    assert store.calls == {}
    assert coroutine.cr_frame is None  # closed: it will never run


@pytest.mark.parametrize("done", [None, ()], ids=["listed", "done-given"])
async def test_a_store_checks_a_runners_prefix_once_when_the_runner_is_built(
    done: tuple[str, ...] | None,
) -> None:
    store = PrefixCheckingStore()
    with pytest.raises(InvalidPrefix, match="is refused"):
        Runner(store, "refused", done=done)
    runner = Runner(store, "wf", done=done)
    for name in ("a", "b", "a"):
        await runner.step(name, lambda: None)
    assert store.checked == ["refused/steps/", "wf/steps/"]  # none per step
