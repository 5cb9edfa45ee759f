"""How the bridge and the listener hold what they open (client, subscription,
task group) and close it: in reverse order, shielded from cancellation, each
part told the exception that ended the block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from anyio.abc import TaskGroup


class ShieldedExitStack:
    """An ``AsyncExitStack`` whose exit cannot be cancelled.

    The shield is a cancel scope entered first and made a shield when closing
    starts. It cannot be a scope around the exit instead: anyio requires a
    task group's scope to be exited from where it was entered, not from
    inside a newer scope; inside one entered before it is fine. So a
    cancelled host, or a host cancelled while opening, leaks no client.
    """

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._shield = anyio.CancelScope()

    def open(self) -> AsyncExitStack:
        """Call first in ``__aenter__``, and close in the same task."""
        self._stack.enter_context(self._shield)
        return self._stack

    async def close(self, exc: BaseException | None) -> None:
        """Exit everything, giving each part the block's exception (or none).

        That exception is left to the caller to propagate; any other error
        from cleanup is raised.
        """
        self._shield.shield = True
        try:
            if exc is None:
                await self._stack.__aexit__(None, None, None)
            else:
                await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
        except BaseException as raised:
            if raised is not exc:
                raise


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """anyio's task group for a resource's stack: given the block's exception
    on exit like any task group, and handing it back as itself to the parts
    closed after it (the client hears ``LookupError``, not a group) and to
    the caller's ``except`` clauses.

    That is the one exception unwrapped, because it is not the task group's:
    anyio wraps it in a group with the tasks' failures. When a task failed
    too, the whole group comes out, the block's exception in it: no failure
    is dropped.
    """
    thrown: BaseException | None = None
    try:
        async with anyio.create_task_group() as group:
            try:
                yield group
            except BaseException as exc:
                thrown = exc
                raise
    except BaseExceptionGroup as errors:
        _, others = errors.split(lambda e: e is thrown)
        if thrown is None or others is not None:
            raise
    if thrown is not None:
        raise thrown  # outside the handler, so it is not chained to the group
