"""Chain and Group: lazy, ordered, bounded, and honest about failures. On asyncio
and on trio."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from asteps import Chain, Group, run_activity

pytestmark = pytest.mark.anyio


async def one() -> int:
    return 1


async def add_one(x: int) -> int:
    return x + 1


class Boom(Exception):
    pass


async def boom() -> None:
    raise Boom("boom")


async def test_constructing_runs_nothing() -> None:
    ran: list[str] = []

    async def mark() -> None:
        ran.append("x")

    chain = Chain(mark, mark)
    group = Group(mark)
    await anyio.wait_all_tasks_blocked()  # anything started would have run by now
    assert ran == []
    await chain
    await group
    assert ran == ["x", "x", "x"]


async def test_a_chain_can_be_awaited_again() -> None:
    chain = Chain(one, one)
    assert await chain == [1, 1]
    assert await chain == [1, 1]


async def test_every_kind_of_activity_is_accepted() -> None:
    def sync_double(x: int) -> int:
        return 2 * x

    coro = one()
    results = await Chain(
        one, (add_one, 4), coro, Chain(one), Group(one, one), (sync_double, 3), lambda: 7
    )
    assert results == [1, 5, 1, [1], [1, 1], 6, 7]


async def test_sync_callables_run_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    def where() -> int:
        return threading.get_ident()

    assert await run_activity(where) != loop_thread


async def test_send_result_passes_each_result_to_the_next() -> None:
    assert await Chain(one, add_one, add_one, send_result=True) == [1, 2, 3]
    assert await Chain(one, (lambda x: x * 10), send_result=True) == [1, 10]


async def test_a_chain_stops_at_the_first_failure_and_raises_it() -> None:
    ran: list[int] = []

    async def after() -> None:
        ran.append(1)

    with pytest.raises(Boom):
        await Chain(one, boom, after)
    assert ran == []


async def test_a_chain_without_break_on_failure_runs_all_then_raises_a_group() -> None:
    ran: list[int] = []

    async def after() -> None:
        ran.append(1)

    with pytest.raises(ExceptionGroup) as info:
        await Chain(boom, after, boom, break_on_failure=False)
    assert ran == [1]
    assert len(info.value.exceptions) == 2


async def test_group_results_are_in_submission_order() -> None:
    finished: list[int] = []
    done = {x: anyio.Event() for x in (1, 2, 3)}

    async def member(x: int, after: int | None) -> int:
        if after is not None:
            await done[after].wait()
        finished.append(x)
        done[x].set()
        return x

    # they finish 2, 3, 1
    assert await Group((member, 1, 3), (member, 2, None), (member, 3, 2)) == [1, 2, 3]
    assert finished == [2, 3, 1]


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_group_never_runs_more_than_max_parallel(limit: int) -> None:
    running = peak = 0
    gate = anyio.Event()

    async def member() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    async def run_group() -> None:
        await Group(*[member] * 12, max_parallel=limit)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_group)
        await anyio.wait_all_tasks_blocked()
        assert running == limit  # as many as allowed, all waiting at the gate
        gate.set()
    assert peak == limit


async def test_group_lets_every_member_finish_then_raises_failures_together() -> None:
    finished: list[int] = []
    failed = anyio.Event()

    async def fail() -> None:
        failed.set()
        raise Boom("boom")

    async def ok(i: int) -> None:
        await failed.wait()  # still running when a member has failed
        finished.append(i)

    with pytest.raises(ExceptionGroup) as info:
        await Group(fail, (ok, 1), fail, (ok, 2))
    assert sorted(finished) == [1, 2]
    assert [type(e) for e in info.value.exceptions] == [Boom, Boom]


async def test_cancelling_a_group_cancels_every_member() -> None:
    cancelled: list[int] = []

    async def forever(i: int) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(i)
            raise

    async def run_group() -> None:
        await Group((forever, 1), (forever, 2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_group)
        await anyio.wait_all_tasks_blocked()  # both members wait
        tg.cancel_scope.cancel()
    assert sorted(cancelled) == [1, 2]


def test_bad_activities_are_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="not an activity"):
        Chain(one, 42)
    with pytest.raises(ValueError, match="max_parallel"):
        Group(one, max_parallel=0)


async def test_a_sync_callable_that_returns_a_coroutine_has_it_awaited() -> None:
    # The callable runs in a worker thread; what it returns is awaited on the
    # loop (trio's threads refuse to hand a coroutine back unless it is boxed).
    assert await run_activity(lambda: add_one(1)) == 2


def numbers() -> Iterator[int]:
    yield 1


async def numbers_later() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize("generator", [numbers, numbers_later], ids=["sync", "async"])
async def test_a_generator_function_is_refused_as_an_activity(generator: Any) -> None:
    # Calling it only builds a generator: its body would never run, and the
    # step would be marked done all the same.
    with pytest.raises(TypeError, match="generator function"):
        await run_activity(generator)
