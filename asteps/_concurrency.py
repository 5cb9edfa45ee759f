"""Bounded concurrency over many items, without a task per item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


def first_exception(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf exception of a (possibly nested) exception group."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


async def for_each(
    items: Iterable[T], fn: Callable[[T], Awaitable[object]], *, concurrency: int
) -> None:
    """Await ``fn(item)`` for every item, at most ``concurrency`` at once.

    ``concurrency`` workers pull from one iterator, so 100,000 items make
    ``concurrency`` tasks, not 100,000, and items are read lazily. The first
    failure cancels the rest and is raised as itself (not as a group).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    source = iter(items)

    async def worker() -> None:
        for item in source:  # shared iterator: each item goes to one worker
            await fn(item)

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    except ExceptionGroup as group:
        first = first_exception(group)
        if len(group.exceptions) > 1:
            first.add_note(f"({len(group.exceptions) - 1} other task(s) failed too)")
        raise first from None
