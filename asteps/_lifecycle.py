"""One lifecycle for every resource asteps opens (stores, SWF bridge and listener).

The rule, as httpx's clients have it: a resource is *unopened*, then *opened*
by ``async with`` (or ``__aenter__``), then *closed* by leaving the block or
``aclose()``. Opening it twice, or again after it closed, is refused with a
sentence that says what to do instead; closing is idempotent.

Misuse of a lifecycle is a bug in the calling code, not a failure of the
resource: it raises ``RuntimeError``, as httpx does, so that it is never
mistaken for a store or SWF that cannot be reached (the CLI's exit 3).
"""

from __future__ import annotations

import enum
from types import TracebackType
from typing import Any, Self


class State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Lifecycle:
    """The state of one resource; ``what`` names it in messages (``"this S3Store"``),
    ``error`` is the exception class raised on misuse (``RuntimeError`` unless given)."""

    __slots__ = ("error", "state", "what")

    def __init__(self, what: str, error: type[Exception] = RuntimeError) -> None:
        self.what = what
        self.error = error
        self.state = State.UNOPENED

    def opening(self) -> None:
        """Call first thing in ``__aenter__``: refuses a second open."""
        if self.state is State.OPENED:
            raise self.error(f"{self.what} is already open: share it instead of opening it again")
        if self.state is State.CLOSED:
            raise self.error(f"{self.what} is closed and cannot be reopened: create a new one")
        self.state = State.OPENED

    def closing(self) -> bool:
        """Call first thing in ``aclose()``: True if there is something to close."""
        was_open = self.state is State.OPENED
        self.state = State.CLOSED
        return was_open

    def check_open(self) -> None:
        """Refuse to use a resource that is not open."""
        if self.state is State.UNOPENED:
            raise self.error(f"{self.what} is not open: use 'async with' before using it")
        if self.state is State.CLOSED:
            raise self.error(f"{self.what} is closed: create a new one")


class AsyncResource:
    """What every resource asteps has does on leaving an ``async with`` block:
    close, as ``aclose()`` does, told the exception that ended the block (as
    anyio's ``AsyncResource`` makes ``__aexit__`` call ``aclose()``)."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit(exc)

    async def aclose(self) -> None:
        """Close, as leaving the ``async with`` block does; calling it again
        does nothing. A closed resource cannot be reopened."""
        await self._exit(None)

    async def _exit(self, exc: BaseException | None) -> None:
        """Close; ``exc`` ended the block, None on a plain close (override)."""
        raise NotImplementedError


class Resource(AsyncResource):
    """The lifecycle of a resource in one place, so that each resource writes
    only what it acquires and releases (as httpx's ``AsyncBaseTransport``
    gives every transport its ``__aenter__``/``__aexit__``).

    ``async with`` (``__aenter__``) opens it once, by :meth:`_acquire`; a
    second open, or one after closing, is refused (see :class:`Lifecycle`).
    When acquiring fails or is cancelled midway, :meth:`_release` is told why
    and releases what was acquired. Leaving the block, or :meth:`aclose`,
    releases once; closing again does nothing.

    :meth:`_release` must not be cut short by a cancellation: it shields what
    it awaits (a store with a ``CancelScope(shield=True)``, the SWF bridge and
    listener with their ``ShieldedExitStack``, whose task groups cannot be
    exited from inside a newer scope).
    """

    def __init__(self, what: str) -> None:
        self._lifecycle = Lifecycle(what)

    async def __aenter__(self) -> Self:
        self._lifecycle.opening()
        try:
            await self._acquire()
        except BaseException as exc:
            self._lifecycle.closing()
            await self._release(exc)
            raise
        return self

    async def _exit(self, exc: BaseException | None) -> None:
        if self._lifecycle.closing():
            await self._release(exc)

    async def _acquire(self) -> None:
        """Open what the resource holds (override; nothing by default)."""

    async def _release(self, exc: BaseException | None) -> None:
        """Release what :meth:`_acquire` acquired, even when it failed midway;
        ``exc`` is what ended the block (or the opening), None on a plain close.
        Called once (override; nothing by default)."""


class Wrapper(AsyncResource):
    """The lifecycle of a wrapper (``LatencyStore``, the traced stores) is the
    wrapped resource's: opening the wrapper opens it, closing closes it, and
    its refusals (opened twice, used once closed) are the wrapped one's, in
    its words. The wrapper keeps no state of its own."""

    def _wrapped(self) -> Any:
        """The wrapped resource (override): anything with ``__aenter__`` and
        ``aclose``, a store say."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self._wrapped().__aenter__()
        return self

    async def _exit(self, exc: BaseException | None) -> None:
        await self._wrapped().aclose()
