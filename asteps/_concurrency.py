"""Bounded concurrency over many items, without a task per item; and the
leaves of an exception group, for the one place that unwraps them (the CLI).

Why failures come out as a group: an anyio task group always wraps what
fails in it, since two tasks can fail at once. Unwrapping to the first one
here would drop the second; the caller that knows what to do with a failure
handles it with ``except*``, which matches inside a group as well as a bare
exception, and only the CLI, at the edge, unwraps (:func:`leaves`) to say
each failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import anyio

T = TypeVar("T")


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception in a (possibly nested) exception group, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


async def for_each(
    items: Iterable[T], fn: Callable[[T], Awaitable[object]], *, concurrency: int
) -> None:
    """Await ``fn(item)`` for every item, at most ``concurrency`` at once.

    ``concurrency`` workers pull from one iterator, so 100,000 items make
    ``concurrency`` tasks, not 100,000, and items are read lazily. The first
    failure cancels the rest; what failed comes out as an exception group,
    as from any task group (catch it with ``except* StoreError``, say), with
    every failure that happened before the others stopped.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    source = iter(items)

    async def worker() -> None:
        for item in source:  # shared iterator: each item goes to one worker
            await fn(item)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
