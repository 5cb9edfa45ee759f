"""A coroutine handed to asteps that will never run is closed, never left to
warn "coroutine ... was never awaited"; one that may still run stays open.

Each case checks the coroutine's state directly (``CORO_CLOSED`` and not
``CORO_CREATED``); the whole suite also runs with RuntimeWarning as an error,
so a leak anywhere else fails too.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Coroutine, Mapping
from typing import Any

import anyio
import anyio.to_thread
import pytest

from asteps import Chain, Group, MemoryStore, Retry, Runner, Step, StoreError, run_activity
from asteps._canvas import close_unawaited

CLOSED = inspect.CORO_CLOSED


async def work() -> str:
    return "done"


class Boom(Exception):
    pass


async def boom() -> None:
    raise Boom("boom")


def state(coro: Coroutine[Any, Any, Any]) -> str:
    return inspect.getcoroutinestate(coro)


async def done_runner(*names: str) -> Runner:
    store = MemoryStore()
    for name in names:
        await store.mark_done("wf/steps/", name, {})
    return Runner(store, "wf")


async def test_a_step_already_done_closes_its_coroutine() -> None:
    runner = await done_runner("x")
    coro = work()
    outcome = await runner.step("x", coro)
    assert outcome.status == "skipped"
    assert state(coro) == CLOSED


@pytest.mark.parametrize(
    ("setup", "options"),
    [
        (lambda r: r.add_skipped_steps("x"), {}),
        (lambda r: r.add_skipped_steps("*", reason="maintenance"), {}),
        (lambda r: r.add_skipped_steps("x.y"), {}),  # a parent's pattern does not cover it
    ],
)
async def test_a_step_skipped_by_a_pattern_closes_its_coroutine(
    setup: Any, options: dict[str, Any]
) -> None:
    runner = Runner(MemoryStore(), "wf")
    setup(runner)
    coro = work()
    outcome = await runner.step("x", coro, **options)
    if outcome.status == "skipped":
        assert state(coro) == CLOSED
    else:  # "x.y" does not cover "x": it ran
        assert outcome.result == "done"


async def test_a_dry_run_closes_the_activities_and_the_alternative() -> None:
    runner = Runner(MemoryStore(), "wf", dry_run=True)
    coro, other = work(), work()
    outcome = await runner.step("x", coro, activities_if_step_already_done=other)
    assert outcome.status == "planned"
    assert (state(coro), state(other)) == (CLOSED, CLOSED)


async def test_a_step_that_runs_closes_the_unused_alternative() -> None:
    runner = Runner(MemoryStore(), "wf")
    other = work()
    outcome = await runner.step("x", work(), activities_if_step_already_done=other)
    assert outcome.status == "completed"
    assert state(other) == CLOSED


async def test_a_skipped_step_runs_its_alternative_and_closes_its_activities() -> None:
    runner = await done_runner("x")
    coro, other = work(), work()
    outcome = await runner.step("x", coro, activities_if_step_already_done=other)
    assert (outcome.status, outcome.result) == ("skipped", "done")
    assert state(coro) == CLOSED


async def test_coroutines_inside_tuples_and_nested_containers_are_closed() -> None:
    runner = await done_runner("x")
    direct, in_tuple, in_chain, in_group = work(), work(), work(), work()
    activities = Chain((asyncio.wait_for, in_tuple, 5), Chain(in_chain, Group(in_group)), direct)
    await runner.step("x", activities)
    assert {state(c) for c in (direct, in_tuple, in_chain, in_group)} == {CLOSED}


async def test_futures_and_tasks_are_left_to_their_owner() -> None:
    runner = await done_runner("x")
    future = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(work())
    await runner.step("x", Chain(future, task))
    assert not future.cancelled()
    assert await task == "done"
    future.cancel()


async def test_a_chain_broken_by_a_failure_closes_the_members_it_did_not_reach() -> None:
    ok = work()
    with pytest.raises(Boom):
        await Chain(boom(), ok)
    assert state(ok) == CLOSED


async def test_a_chain_that_goes_on_after_failures_runs_every_member() -> None:
    ok = work()
    with pytest.raises(ExceptionGroup):
        await Chain(boom(), ok, break_on_failure=False)
    assert state(ok) == CLOSED  # it ran to its end


async def test_a_cancelled_chain_closes_the_members_it_did_not_reach() -> None:
    later = work()
    with anyio.move_on_after(0.01):
        await Chain(anyio.sleep(10), later)
    assert state(later) == CLOSED


async def test_a_group_cancelled_at_once_leaves_no_member_coroutine_open() -> None:
    first, second = work(), work()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await Group(first, second)
    assert (state(first), state(second)) == (CLOSED, CLOSED)


async def test_a_bounded_group_cancelled_while_members_wait_closes_the_waiting_ones() -> None:
    waiting = work()
    with anyio.move_on_after(0.01):
        await Group(anyio.sleep(10), waiting, max_parallel=1)
    assert state(waiting) == CLOSED


class FailingListing(MemoryStore):
    async def list_done(self, prefix: str) -> set[str]:
        raise StoreError("cannot list", prefix=prefix)

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        raise AssertionError("never reached")


async def test_a_step_whose_listing_failed_closes_its_coroutines() -> None:
    runner = Runner(FailingListing(), "wf")
    coro, other = work(), work()
    with pytest.raises(StoreError):
        await runner.step("x", coro, activities_if_step_already_done=other)
    assert (state(coro), state(other)) == (CLOSED, CLOSED)


async def test_a_step_cancelled_while_waiting_for_its_decision_closes_its_coroutine() -> None:
    class SlowListing(MemoryStore):
        async def list_done(self, prefix: str) -> set[str]:
            await anyio.sleep(10)
            return set()

    runner = Runner(SlowListing(), "wf")
    coro = work()
    with anyio.move_on_after(0.01):
        await runner.step("x", coro)
    assert state(coro) == CLOSED


async def test_a_step_with_a_bad_name_closes_its_coroutine() -> None:
    coro = work()
    with pytest.raises(ValueError, match="step name"):
        await Runner(MemoryStore(), "wf").step("a b", coro)
    assert state(coro) == CLOSED


async def test_a_step_model_submitted_and_skipped_closes_its_coroutine() -> None:
    runner = await done_runner("x")
    coro = work()
    await runner.submit(Step("x", coro))
    assert state(coro) == CLOSED


async def test_a_coroutine_that_already_ran_is_not_disturbed_by_closing() -> None:
    coro = work()
    assert await coro == "done"
    close_unawaited(coro, None, 3, (print, "x"), lambda: None)
    assert state(coro) == CLOSED


async def test_a_kept_result_step_whose_body_cannot_be_read_closes_its_coroutines() -> None:
    class Unreadable(MemoryStore):
        async def read_marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
            raise StoreError("the marker could not be read", prefix=prefix)

    store = Unreadable()
    await store.mark_done("wf/steps/", "x", {})
    coro, other = work(), work()
    with pytest.raises(StoreError):
        await Runner(store, "wf").step(
            "x", coro, keep_result=True, activities_if_step_already_done=other
        )
    assert (state(coro), state(other)) == (CLOSED, CLOSED)


async def test_a_done_step_in_a_cancelled_scope_closes_its_alternative() -> None:
    runner = await done_runner("x")
    await runner.steps_done()
    coro, other = work(), work()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await runner.step("x", coro, activities_if_step_already_done=other)
    assert scope.cancelled_caught
    assert (state(coro), state(other)) == (CLOSED, CLOSED)


async def test_a_coroutine_returned_by_a_sync_activity_whose_step_was_cancelled_is_closed() -> None:
    runner = Runner(MemoryStore(), "wf", done=())
    returned: list[Coroutine[Any, Any, Any]] = []
    started, release = threading.Event(), threading.Event()

    def returns_a_coroutine() -> Coroutine[Any, Any, Any]:
        started.set()
        release.wait()
        returned.append(work())
        return returned[0]

    scope = anyio.CancelScope()

    async def step() -> None:
        with scope:
            await runner.step("x", returns_a_coroutine)

    async with anyio.create_task_group() as tg:
        tg.start_soon(step)
        await anyio.to_thread.run_sync(started.wait)
        scope.cancel()  # while the thread runs: what it returns will never be awaited
        release.set()
    assert scope.cancelled_caught
    assert state(returned[0]) == CLOSED


async def test_a_malformed_tuple_activity_closes_its_coroutine_arguments() -> None:
    coro = work()
    outcome = await Runner(MemoryStore(), "wf", done=()).step("x", (42, coro))
    assert outcome.status == "failed"
    assert "a tuple activity must be (callable, *args)" in str(outcome.error)
    assert state(coro) == CLOSED


async def test_run_activity_refusing_a_malformed_tuple_closes_its_coroutine_arguments() -> None:
    coro = work()
    with pytest.raises(TypeError, match="a tuple activity must be"):
        await run_activity((42, coro))
    assert state(coro) == CLOSED


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda coro: Chain(coro, 5), TypeError),
        (lambda coro: Chain((42, coro)), TypeError),
        (lambda coro: Group(work, (None, coro)), TypeError),
        (lambda coro: Group(coro, max_parallel=0), ValueError),
        (lambda coro: Step("a b", coro), ValueError),
        (lambda coro: Step("x", coro, retry=Retry(3)), TypeError),
    ],
    ids=[
        "chain with a non-activity",
        "chain with a malformed tuple",
        "group with a malformed tuple",
        "group bound 0",
        "step named badly",
        "retried coroutine",
    ],
)
async def test_a_constructor_that_refuses_its_activities_closes_their_coroutines(
    build: Any, error: type[Exception]
) -> None:
    coro = work()
    with pytest.raises(error):
        build(coro)
    assert state(coro) == CLOSED
