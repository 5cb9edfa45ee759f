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
