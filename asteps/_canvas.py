"""Chain and Group: lazy awaitables that compose activities.

An *activity* (:data:`asteps.Activity`) is any of:

- an async callable, called with no argument (or with the previous result in a
  ``Chain(send_result=True)``);
- a ``(callable, *args)`` tuple;
- a coroutine or any other awaitable (awaited as is; it can run only once);
- a nested :class:`Chain` or :class:`Group`;
- a plain sync callable, run in a worker thread so it never blocks the loop.

Constructing a Chain or Group runs nothing; awaiting it runs it, and it may be
awaited again (each await runs the activities anew, except bare coroutines).

Coroutines that will never run are closed (why: Python warns "coroutine ... was
never awaited" for each, and a suite run with warnings as errors fails). When
asteps decides not to await a coroutine it received (a skipped step, a dry run,
a chain broken by a failure, a cancelled member), :func:`close_unawaited`
closes it, wherever it sits: directly, among a tuple's arguments, inside a
nested Chain or Group. Other awaitables (futures, tasks) belong to whoever
made them and are left alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Iterator
from types import CoroutineType
from typing import Any, TypeAlias

import anyio
import anyio.lowlevel
import anyio.to_thread

Activity: TypeAlias = Callable[..., Any] | tuple[Any, ...] | Awaitable[Any]
"""What a step runs: an async or sync callable, a ``(callable, *args)`` tuple,
a coroutine or other awaitable, or a :class:`~asteps.Chain` / :class:`~asteps.Group`
(which are awaitables). See :func:`asteps.run_activity`."""


async def run_activity(activity: Activity, *args: Any) -> Any:
    """Run one activity to completion and return its result.

    ``args`` are appended to a tuple activity's own arguments, or passed to a
    callable; they are ignored by awaitables and containers, which take none.
    """
    return await start_activity(activity, *args)


def start_activity(activity: Activity, *args: Any) -> Awaitable[Any]:
    """The awaitable that runs ``activity``; awaiting it gives its result.

    A plain function rather than a coroutine, so that an async function's own
    coroutine is awaited directly: the runner runs every step's phases through
    here, and a coroutine frame per phase is most of a phase's cost.
    """
    target: Any = activity  # dispatched on what it is, below
    # Plain async functions first, checked by their code flags: the common
    # case, and inspect's full check costs more than a skipped step's decision
    # (bench/overhead.py).
    code = getattr(target, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        return target(*args)  # type: ignore[no-any-return]
    if inspect.iscoroutinefunction(activity):
        return target(*args)  # type: ignore[no-any-return]
    if isinstance(activity, Chain | Group):
        return activity
    if isinstance(activity, tuple):
        if not _is_call(activity):
            close_unawaited(activity)  # refused: its coroutine arguments will never run
            raise TypeError(f"a tuple activity must be (callable, *args); got {activity!r}")
        return start_activity(activity[0], *activity[1:], *args)
    if inspect.isawaitable(activity):
        return activity
    if inspect.isgeneratorfunction(activity) or inspect.isasyncgenfunction(activity):
        raise TypeError(
            f"cannot run {activity!r}: it is a generator function, and calling it only "
            "builds a generator, so its body would never run: give an async function "
            "or a sync one that returns its result"
        )
    if callable(activity):
        # Async callables that inspect cannot see (objects with an async
        # __call__) are called on the loop where they belong.
        if _has_async_call(activity):
            return target(*args)  # type: ignore[no-any-return]
        return _run_in_thread(activity, *args)
    raise TypeError(
        f"cannot run {activity!r}: an activity is an async or sync callable, a "
        "(callable, *args) tuple, an awaitable, a Chain or a Group"
    )


async def _run_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """A sync callable, in a worker thread so that it never blocks the loop. What
    it returns is awaited when awaitable (a lambda returning a coroutine)."""

    def call() -> tuple[Any]:
        # Boxed: trio refuses a thread whose function returns a coroutine.
        return (function(*args),)

    (result,) = await anyio.to_thread.run_sync(call)
    # A thread cannot be interrupted: when the caller was cancelled meanwhile,
    # the wait was shielded and the thread ran to its end. Deliver that
    # cancellation now, so that a cancelled step is never marked done.
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        close_unawaited(result)  # what it returned will never be awaited
        raise
    if inspect.isawaitable(result):
        return await result
    return result


def coroutines_in(*activities: object) -> Iterator[CoroutineType[Any, Any, Any]]:
    """Every coroutine object in ``activities``, looking inside ``(callable,
    *args)`` tuples and nested Chains and Groups (other awaitables, futures
    and tasks, are their owners')."""
    for activity in activities:
        if isinstance(activity, CoroutineType):
            yield activity
        elif isinstance(activity, tuple):
            yield from coroutines_in(*activity)
        elif isinstance(activity, Chain | Group):
            yield from coroutines_in(*activity.activities)


def close_unawaited(*activities: Activity | None) -> None:
    """Close every coroutine in ``activities``, looking where
    :func:`coroutines_in` looks: they will never be awaited. Closing a
    coroutine that already ran is harmless. (Every step calls this, so it
    walks the activities itself rather than through a generator: a skipped
    step took 4% longer, bench/overhead.py.)"""
    for activity in activities:
        if isinstance(activity, CoroutineType):
            activity.close()
        elif isinstance(activity, tuple):
            close_unawaited(*activity)
        elif isinstance(activity, Chain | Group):
            close_unawaited(*activity.activities)


def _has_async_call(obj: object) -> bool:
    call = getattr(type(obj), "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def _is_call(activity: tuple[Any, ...]) -> bool:
    """A tuple activity is ``(callable, *args)``."""
    return bool(activity) and callable(activity[0])


def _is_activity(a: object) -> bool:
    if isinstance(a, tuple):
        return _is_call(a)
    return callable(a) or isinstance(a, Chain | Group) or inspect.isawaitable(a)


def _check(activities: tuple[Activity, ...], kind: str) -> tuple[Activity, ...]:
    for a in activities:
        if not _is_activity(a):
            close_unawaited(*activities)  # refused: they will never run
            raise TypeError(
                f"{kind} member {a!r} is not an activity: give an async or sync callable, a "
                "(callable, *args) tuple, an awaitable, a Chain or a Group"
            )
    return activities


class Chain:
    """Run activities one after the other; ``await`` returns their results.

    Stops at the first failure and raises it (the members left are not run,
    and their coroutines are closed). With ``send_result=True`` each callable
    after the first receives the previous result as its last argument.
    ``break_on_failure=False`` runs every member and then raises the failures
    together as an :class:`ExceptionGroup`.
    """

    __slots__ = ("activities", "break_on_failure", "send_result")

    def __init__(
        self, *activities: Activity, send_result: bool = False, break_on_failure: bool = True
    ) -> None:
        self.activities = _check(activities, "Chain")
        self.send_result = send_result
        self.break_on_failure = break_on_failure

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.run().__await__()

    async def run(self, *args: Any) -> list[Any]:
        """Run the chain, passing ``args`` to its first activity.

        ``await chain`` is ``await chain.run()``. With arguments, a chain built
        once serves as a reusable pipeline: with ``send_result=True`` each
        activity receives what the previous one returned (the runner runs the
        phases of a step this way).
        """
        results: list[Any] = []
        failures: list[Exception] = []
        started = 0
        try:
            for activity in self.activities:
                started += 1
                try:
                    result = await start_activity(activity, *args)
                except Exception as exc:
                    if self.break_on_failure:
                        raise
                    failures.append(exc)
                    result = None
                results.append(result)
                if self.send_result:
                    args = (result,)
        finally:
            # Broken by a failure or a cancellation: the rest will never run.
            close_unawaited(*self.activities[started:])
        if failures:
            raise ExceptionGroup(f"{len(failures)} activities of the chain failed", failures)
        return results

    def __repr__(self) -> str:
        return f"Chain({', '.join(map(repr, self.activities))})"


class Group:
    """Run activities concurrently; ``await`` returns their results in order.

    At most ``max_parallel`` run at once (no bound when ``None``). Every member
    runs to the end even when another fails; failures are then raised together
    as an :class:`ExceptionGroup`. Cancelling the await cancels every member
    (and closes the coroutines of those that had not started).
    """

    __slots__ = ("activities", "max_parallel")

    def __init__(self, *activities: Activity, max_parallel: int | None = None) -> None:
        if max_parallel is not None and (
            isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1
        ):
            close_unawaited(*activities)  # refused: they will never run
            raise ValueError(f"max_parallel must be a positive int or None, got {max_parallel!r}")
        self.activities = _check(activities, "Group")
        self.max_parallel = max_parallel

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self._run().__await__()

    async def _run(self) -> list[Any]:
        n = len(self.activities)
        results: list[Any] = [None] * n
        failures: list[tuple[int, Exception]] = []
        started = [False] * n
        limit = anyio.Semaphore(self.max_parallel) if self.max_parallel else None

        async def run(i: int, activity: Activity) -> None:
            started[i] = True
            try:
                results[i] = await run_activity(activity)
            except Exception as exc:
                failures.append((i, exc))

        async def member(i: int, activity: Activity) -> None:
            if limit is None:
                await run(i, activity)
            else:
                async with limit:
                    await run(i, activity)

        try:
            async with anyio.create_task_group() as tg:
                for i, activity in enumerate(self.activities):
                    tg.start_soon(member, i, activity)
        finally:
            close_unawaited(*(a for i, a in enumerate(self.activities) if not started[i]))
        if failures:
            failures.sort(key=lambda f: f[0])
            raise ExceptionGroup(
                f"{len(failures)} of {n} activities of the group failed",
                [exc for _, exc in failures],
            )
        return results

    def __repr__(self) -> str:
        return f"Group({', '.join(map(repr, self.activities))}, max_parallel={self.max_parallel})"
