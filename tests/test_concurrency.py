"""for_each: bounded concurrency without a task per item; its failures come out
as a group, as from any task group, none dropped. On asyncio and on trio."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from asteps._concurrency import for_each, leaves

pytestmark = pytest.mark.anyio


async def test_every_item_is_processed_once_with_at_most_n_at_once() -> None:
    running = peak = 0
    seen: list[int] = []
    gate = anyio.Event()

    async def work(i: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        seen.append(i)
        running -= 1

    async def run() -> None:
        await for_each(range(100), work, concurrency=7)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        assert running == 7  # seven items at once, all waiting at the gate
        gate.set()
    assert sorted(seen) == list(range(100))
    assert peak == 7


async def test_items_are_read_lazily() -> None:
    read: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            read.append(i)
            yield i

    async def work(i: int) -> None:
        if i == 10:
            assert len(read) <= 10 + 3  # not the whole iterator up front
        await anyio.lowlevel.checkpoint()

    await for_each(items(), work, concurrency=3)
    assert len(read) == 1000


async def test_a_failure_cancels_the_rest_and_comes_out_in_a_group() -> None:
    started: list[int] = []

    async def work(i: int) -> None:
        started.append(i)
        if i == 5:
            raise KeyError("five")
        await anyio.lowlevel.checkpoint()

    with pytest.raises(ExceptionGroup) as info:
        await for_each(range(50), work, concurrency=4)
    assert [type(e) for e in info.value.exceptions] == [KeyError]
    assert max(started) < 49  # the rest was cancelled, not run


async def test_two_failures_at_once_both_reach_the_caller() -> None:
    async def work(i: int) -> None:
        raise KeyError(i)  # before any checkpoint: both workers fail

    with pytest.raises(ExceptionGroup) as info:
        await for_each([1, 2], work, concurrency=2)
    assert sorted(e.args[0] for e in leaves(info.value)) == [1, 2]


async def test_a_caller_handles_the_failure_it_knows_with_except_star() -> None:
    async def work(i: int) -> None:
        raise KeyError(i)

    handled: list[int] = []
    try:
        await for_each([7], work, concurrency=3)
    except* KeyError as group:
        handled = [e.args[0] for e in leaves(group)]
    assert handled == [7]


def test_leaves_flattens_nested_groups_in_order() -> None:
    a, b, c = KeyError("a"), ValueError("b"), OSError("c")
    nested = ExceptionGroup("outer", [a, ExceptionGroup("inner", [b, c])])
    assert leaves(nested) == [a, b, c]


async def test_concurrency_must_be_positive() -> None:
    async def work(i: int) -> None:
        pass

    with pytest.raises(ValueError, match="at least 1"):
        await for_each([1], work, concurrency=0)
