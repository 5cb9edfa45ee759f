"""for_each: bounded concurrency without a task per item. On asyncio and on trio."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from asteps._concurrency import for_each

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


async def test_the_first_failure_is_raised_as_itself() -> None:
    async def work(i: int) -> None:
        if i == 5:
            raise KeyError("five")
        await anyio.lowlevel.checkpoint()

    with pytest.raises(KeyError, match="five"):
        await for_each(range(50), work, concurrency=4)


async def test_concurrency_must_be_positive() -> None:
    async def work(i: int) -> None:
        pass

    with pytest.raises(ValueError, match="at least 1"):
        await for_each([1], work, concurrency=0)
