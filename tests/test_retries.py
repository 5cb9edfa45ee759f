"""Retries and time limits per step: Retry, time_limit, StepTimeout.

Delays are measured with an injected sleep, never waited; time limits are
short, and only "it was cut" is asserted, never how long anything took. On
asyncio and on trio.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from asteps import Chain, Group, MemoryStore, Retry, Runner, Step, StepTimeout
from asteps.errors import AstepsError

from .conftest import CountingStore

pytestmark = pytest.mark.anyio

PREFIX = "wf/steps/"


class Flaky(Exception):
    pass


class Sleeps:
    """An injected sleep: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.lowlevel.checkpoint()


def failing(times: int, error: type[Exception] = Flaky, result: Any = "ok") -> Any:
    """An async activity that fails ``times`` times, then returns ``result``;
    ``.calls`` counts its attempts."""

    async def activity() -> Any:
        activity.calls += 1  # type: ignore[attr-defined]
        if activity.calls <= times:  # type: ignore[attr-defined]
            raise error(f"attempt {activity.calls}")  # type: ignore[attr-defined]
        return result

    activity.calls = 0  # type: ignore[attr-defined]
    return activity


def statuses(runner: Runner) -> list[str]:
    return [m.details["status"] for m in runner.markers]


# -- retries -------------------------------------------------------------------------


async def test_a_step_failing_twice_then_succeeding_completes_after_three_attempts(
    store: CountingStore,
) -> None:
    runner = Runner(store, "wf")
    flaky = failing(2)
    async with runner.bus.subscribe("log.step") as watcher:
        outcome = await runner.step("export", flaky, retry=Retry(3, sleep=Sleeps()))
        seen = watcher.receive_nowait_all()
    assert (outcome.status, outcome.result, outcome.attempts) == ("completed", "ok", 3)
    assert flaky.calls == 3
    assert statuses(runner) == ["scheduled", "retrying", "retrying", "completed"]
    assert [s.payload["status"] for s in seen] == statuses(runner)  # a watcher sees them
    assert store.calls["mark_done"] == 1
    assert await store.list_done(PREFIX) == {"export"}


async def test_a_retrying_marker_names_the_attempt_its_error_and_the_next_delay() -> None:
    runner = Runner(MemoryStore(), "wf")
    retry = Retry(2, delay=5.0, jitter=0.0, sleep=Sleeps())
    await runner.step("export", failing(1), retry=retry)
    retrying, completed = runner.markers[1:]
    assert retrying.details == {
        "step": "export",
        "status": "retrying",
        "forced": False,
        "reasons": [],
        "error": "Flaky: attempt 1",
        "attempt": 1,
        "delay": 5.0,
    }
    assert completed.details["attempts"] == 2


async def test_a_step_failing_every_attempt_fails_with_the_last_error_and_is_not_marked(
    store: CountingStore,
) -> None:
    runner = Runner(store, "wf")
    outcome = await runner.step("export", failing(5), retry=Retry(3, sleep=Sleeps()))
    assert (outcome.status, outcome.attempts) == ("failed", 3)
    assert str(outcome.error) == "attempt 3"
    assert statuses(runner) == ["scheduled", "retrying", "retrying", "failed"]
    assert runner.markers[-1].details["attempts"] == 3
    assert store.calls["mark_done"] == 0


async def test_a_bubbling_step_raises_the_last_error_after_its_attempts() -> None:
    runner = Runner(MemoryStore(), "wf")
    with pytest.raises(Flaky, match="attempt 2"):
        await runner.step(
            "export", failing(5), retry=Retry(2, sleep=Sleeps()), bubbles_exception_on_failure=True
        )
    assert runner.outcomes[-1].attempts == 2


async def test_on_narrows_what_is_retried() -> None:
    runner = Runner(MemoryStore(), "wf")
    retry = Retry(3, on=(ConnectionError, TimeoutError), sleep=Sleeps())
    retried = await runner.step("fetch", failing(2, ConnectionError), retry=retry)
    not_retried = await runner.step("parse", failing(2, ValueError), retry=retry)
    assert (retried.status, retried.attempts) == ("completed", 3)
    assert (not_retried.status, not_retried.attempts) == ("failed", 1)
    assert isinstance(not_retried.error, ValueError)


async def test_back_off_delays_grow_by_backoff_up_to_max_delay() -> None:
    sleeps = Sleeps()
    retry = Retry(5, delay=1.0, backoff=2.0, max_delay=3.0, jitter=0.0, sleep=sleeps)
    await Runner(MemoryStore(), "wf").step("export", failing(4), retry=retry)
    assert sleeps.delays == [1.0, 2.0, 3.0, 3.0]


async def test_jitter_adds_up_to_its_seconds_to_each_delay() -> None:
    sleeps = Sleeps()
    retry = Retry(6, delay=1.0, backoff=1.0, jitter=0.5, sleep=sleeps)
    await Runner(MemoryStore(), "wf").step("export", failing(5), retry=retry)
    assert len(sleeps.delays) == 5
    assert all(1.0 <= d <= 1.5 for d in sleeps.delays)


async def test_a_runners_retry_is_every_steps_default_and_a_step_may_set_its_own() -> None:
    runner = Runner(MemoryStore(), "wf", retry=Retry(3, sleep=Sleeps()))
    by_default = await runner.step("a", failing(2))
    own = await runner.step("b", failing(2), retry=Retry(2, sleep=Sleeps()))
    assert (by_default.status, by_default.attempts) == ("completed", 3)
    assert (own.status, own.attempts) == ("failed", 2)


async def test_a_step_built_beforehand_carries_its_retry_and_time_limit() -> None:
    step = Step("export", failing(1), retry=Retry(2, sleep=Sleeps()), time_limit=30)
    outcome = await Runner(MemoryStore(), "wf").submit(step)
    assert (outcome.status, outcome.attempts) == ("completed", 2)
    assert step.options()["time_limit"] == 30


async def test_a_chain_is_attempted_again_from_its_start() -> None:
    first, second = failing(0), failing(1)
    outcome = await Runner(MemoryStore(), "wf").step(
        "export", Chain(first, second), retry=Retry(2, sleep=Sleeps())
    )
    assert (outcome.status, outcome.attempts) == ("completed", 2)
    assert (first.calls, second.calls) == (2, 2)


async def test_an_exclusive_step_holds_its_claim_across_its_attempts() -> None:
    store = MemoryStore()
    claims: list[str | None] = []

    async def flaky() -> str:
        claims.append(await store.read_claim(PREFIX, "export"))
        if len(claims) < 3:
            raise Flaky("again")
        return "ok"

    runner = Runner(store, "wf", exclusive=True)
    outcome = await runner.step("export", flaky, retry=Retry(3, sleep=Sleeps()))
    assert (outcome.status, outcome.attempts) == ("completed", 3)
    assert None not in claims  # held during every attempt
    assert await store.read_claim(PREFIX, "export") is None  # released once done


# -- time limits -------------------------------------------------------------------


async def test_an_attempt_past_its_time_limit_is_cancelled_and_fails_with_step_timeout(
    store: CountingStore,
) -> None:
    cancelled = False

    async def hangs() -> None:
        nonlocal cancelled
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise

    runner = Runner(store, "wf")
    outcome = await runner.step("export", hangs, time_limit=0.01)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, StepTimeout)
    assert isinstance(outcome.error, TimeoutError)
    assert (outcome.error.step, outcome.error.attempt) == ("export", 1)
    assert cancelled
    assert store.calls["mark_done"] == 0
    assert statuses(runner) == ["scheduled", "failed"]


async def test_an_attempt_cut_by_its_time_limit_is_retried() -> None:
    calls = 0

    async def hangs_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep_forever()
        return "ok"

    runner = Runner(MemoryStore(), "wf", time_limit=0.01)
    outcome = await runner.step(
        "export", hangs_once, retry=Retry(2, on=StepTimeout, sleep=Sleeps())
    )
    assert (outcome.status, outcome.result, outcome.attempts) == ("completed", "ok", 2)
    assert runner.markers[1].details["error"].startswith("StepTimeout: ")


async def test_a_sync_activitys_result_returned_past_its_time_limit_never_marks(
    store: CountingStore,
) -> None:
    started, released, returned = threading.Event(), threading.Event(), threading.Event()

    def slow_sync() -> str:
        started.set()
        released.wait()
        returned.set()
        return "late"

    async def release_after_the_deadline() -> None:
        await anyio.to_thread.run_sync(started.wait)
        # The deadline was set before the thread started: a sleep as long as the
        # limit ends after it on the loop's clock, however slow the machine.
        await anyio.sleep(0.02)
        released.set()

    runner = Runner(store, "wf")
    async with anyio.create_task_group() as tg:
        tg.start_soon(release_after_the_deadline)
        outcome = await runner.step("export", slow_sync, time_limit=0.01)
    assert returned.is_set()
    assert (outcome.status, outcome.result) == ("failed", None)
    assert isinstance(outcome.error, StepTimeout)
    assert store.calls["mark_done"] == 0


# -- cancellation --------------------------------------------------------------------


async def test_cancelling_the_caller_during_a_back_off_stops_at_once_and_marks_nothing(
    store: CountingStore,
) -> None:
    runner = Runner(store, "wf")
    flaky = failing(5)
    backing_off = anyio.Event()

    async def watch() -> None:
        async with runner.bus.subscribe("log.step") as markers:
            async for marker in markers:
                if marker.payload["status"] == "retrying":
                    backing_off.set()
                    return

    async def step() -> None:
        await runner.step("export", flaky, retry=Retry(3, delay=3600.0))

    with anyio.fail_after(30):  # a guard only: the step waits an hour unless cut
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()  # the watcher subscribed and waits
            tg.start_soon(step)
            await backing_off.wait()
            tg.cancel_scope.cancel()
    assert flaky.calls == 1
    assert store.calls["mark_done"] == 0
    assert statuses(runner) == ["scheduled", "retrying"]
    assert runner.outcomes == []


async def test_a_cancelled_attempt_is_never_retried(store: CountingStore) -> None:
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()

    runner = Runner(store, "wf")
    with anyio.move_on_after(0.01) as scope:
        await runner.step("export", hangs, retry=Retry(3, sleep=Sleeps()))
    assert scope.cancelled_caught
    assert calls == 1
    assert statuses(runner) == ["scheduled"]
    assert store.calls["mark_done"] == 0


# -- what is refused, before anything runs ---------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"attempts": 0}, ValueError),
        ({"attempts": 1.5}, TypeError),
        ({"attempts": True}, TypeError),
        ({"attempts": 2, "delay": -1.0}, ValueError),
        ({"attempts": 2, "delay": math.nan}, ValueError),
        ({"attempts": 2, "max_delay": math.inf}, ValueError),
        ({"attempts": 2, "jitter": -0.1}, ValueError),
        ({"attempts": 2, "backoff": 0.5}, ValueError),
        ({"attempts": 2, "backoff": math.nan}, ValueError),
        ({"attempts": 2, "delay": "1"}, TypeError),
        ({"attempts": 2, "on": int}, TypeError),
        ({"attempts": 2, "on": "Flaky"}, TypeError),
        ({"attempts": 2, "on": (Flaky, 3)}, TypeError),
        ({"attempts": 2, "on": ()}, TypeError),
        ({"attempts": 2, "on": BaseException}, TypeError),  # would retry a cancellation
    ],
)
def test_a_retry_with_bad_values_is_refused_when_built(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Retry(**options)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"time_limit": 0}, ValueError),
        ({"time_limit": -1.0}, ValueError),
        ({"time_limit": math.nan}, ValueError),
        ({"time_limit": math.inf}, ValueError),
        ({"time_limit": "5"}, TypeError),
        ({"retry": 3}, TypeError),
        ({"retries": 3}, TypeError),  # an unknown option is still a TypeError
    ],
)
async def test_bad_options_are_refused_before_anything_runs(
    store: CountingStore, options: dict[str, Any], error: type[Exception]
) -> None:
    activity = failing(0)
    runner = Runner(store, "wf")
    with pytest.raises(error):
        await runner.step("export", activity, **options)
    if "retries" not in options:
        with pytest.raises(error):
            Step("export", activity, **options)
        with pytest.raises(error):
            Runner(store, "wf", **options)
    assert activity.calls == 0
    assert not store.calls
    assert runner.markers == []


async def test_a_coroutine_cannot_be_retried_and_is_closed_unrun(store: CountingStore) -> None:
    activity = failing(0)
    coroutine = activity()
    runner = Runner(store, "wf")
    with pytest.raises(TypeError, match="async function itself"):
        await runner.step("export", coroutine, retry=Retry(2))
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning
    assert activity.calls == 0
    # One attempt needs no second await: allowed.
    outcome = await runner.step("export", activity(), retry=Retry(1))
    assert outcome.status == "completed"


async def awaiting(awaitable: Any) -> Any:
    return await awaitable


@pytest.mark.parametrize(
    "container",
    [
        lambda coroutine: Chain(coroutine),
        lambda coroutine: Group(failing(0), coroutine),
        lambda coroutine: Chain(Group(coroutine)),
        lambda coroutine: (awaiting, coroutine),
    ],
    ids=["chain", "group", "nested", "tuple-argument"],
)
async def test_a_chain_group_or_tuple_holding_a_coroutine_cannot_be_retried(
    store: CountingStore, container: Any
) -> None:
    # A second attempt would await the coroutine again: it failed with
    # "cannot reuse already awaited coroutine", hiding the first error.
    activity = failing(1)
    coroutine = activity()
    runner = Runner(store, "wf")
    with pytest.raises(
        TypeError, match=r"holds <coroutine object .*, which can be awaited only once"
    ):
        await runner.step("export", container(coroutine), retry=Retry(2, sleep=Sleeps()))
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning
    assert activity.calls == 0
    assert not store.calls


async def test_a_sync_sleep_fails_the_step_saying_the_sleep_must_be_async(
    store: CountingStore,
) -> None:
    # Retry can only check that sleep is callable (tenacity's own sleeps are
    # sync functions returning an awaitable); one returning None failed with
    # "object NoneType can't be used in 'await' expression".
    delays: list[float] = []
    runner = Runner(store, "wf")
    outcome = await runner.step("export", failing(1), retry=Retry(2, sleep=delays.append))
    assert outcome.status == "failed"
    assert isinstance(outcome.error, TypeError)
    assert "Retry sleep must be an async callable" in str(outcome.error)
    assert len(delays) == 1
    assert store.calls["mark_done"] == 0


def test_errors_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Retry(0)
    assert issubclass(StepTimeout, AstepsError)
