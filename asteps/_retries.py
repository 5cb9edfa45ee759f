"""Retries and time limits of a step's activities (``retry=``, ``time_limit=``).

Only the activities are attempted again: never the claim, never the markers,
never a cancellation. :class:`Attempts` is the loop; the runner makes one only
for a step that has a retry or a time limit, so a plain step pays nothing.

Why it works this way:

- **tenacity does the waiting.** ``AsyncRetrying`` takes the sleep to use
  (``anyio.sleep``, so it runs on asyncio and trio alike, and a test can
  inject its own through :attr:`Retry.sleep`), async callbacks (the runner
  publishes the ``retrying`` marker from one), and composes the back-off from
  its own ``wait_exponential`` and ``wait_random``.
- **Cancellation is never retried.** ``Retry.on`` accepts only subclasses of
  ``Exception``, and cancellation (asyncio's ``CancelledError``, trio's
  ``Cancelled``) is not one: tenacity re-raises it at once, and a cancellation
  during a back-off interrupts ``anyio.sleep`` itself.
- **A time limit is a cancel scope around one attempt** (``move_on_after``).
  An attempt it cuts becomes :class:`~asteps.errors.StepTimeout`, a failed
  attempt like any other. A sync activity's thread cannot be interrupted: the
  attempt ends when the thread returns, and its late result is discarded.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ._canvas import Activity, Chain, Group, coroutines_in, start_activity
from ._names import shown
from .errors import StepTimeout

OnRetry = Callable[[int, Exception, float], Awaitable[None]]
"""What the runner does when an attempt failed and another follows:
called with the attempt's number, its exception and the delay before the next."""


@dataclass(frozen=True, slots=True)
class Retry:
    """How often a step's activities are attempted, and how long to wait between.

    ``attempts`` counts the first one: ``Retry(3)`` runs the activities at most
    three times. The delay before attempt *n + 1* is ``delay * backoff ** (n - 1)``,
    at most ``max_delay``, plus up to ``jitter`` seconds drawn at random (so
    that runners failing together do not retry together). Only exceptions of
    the types in ``on`` are retried; any other fails the step at once.

    ``sleep`` is how the delays are waited (``anyio.sleep``); tests give their
    own to measure the delays without waiting them. What it returns must be
    awaitable, which only calling it tells: a sync one fails the step at its
    first delay, with a ``TypeError`` that says so. Other bad values raise
    ``ValueError`` (``TypeError`` for a wrong type) here, before anything runs.
    """

    attempts: int
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1
    on: type[Exception] | tuple[type[Exception], ...] = Exception
    sleep: Callable[[float], Awaitable[Any]] = field(
        default=anyio.sleep, repr=False, compare=False, kw_only=True
    )

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry attempts must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"Retry attempts must be at least 1, got {self.attempts}")
        for what in ("delay", "max_delay", "jitter"):
            _seconds(what, getattr(self, what))
        _number("backoff", self.backoff)
        if not self.backoff >= 1:
            raise ValueError(f"Retry backoff must be at least 1, got {self.backoff!r}")
        types = self.on if isinstance(self.on, tuple) else (self.on,)
        if not types or not all(isinstance(t, type) and issubclass(t, Exception) for t in types):
            raise TypeError(
                "Retry on must be an exception type or a tuple of them (subclasses of "
                f"Exception: a cancellation is never retried), got {self.on!r}"
            )
        if not callable(self.sleep):
            raise TypeError(f"Retry sleep must be an async callable, got {self.sleep!r}")


def check_retry(retry: object, activities: Activity) -> Retry | None:
    """``retry`` is a :class:`Retry` or None; one that may attempt again needs
    activities that can run again."""
    if retry is None:
        return None
    if not isinstance(retry, Retry):
        raise TypeError(f"retry must be an asteps.Retry or None, got {retry!r}")
    once = _awaited_once(activities) if retry.attempts > 1 else None
    if once is not None:
        what = f"{activities!r} can be awaited only once"
        if once is not activities:
            what = f"{activities!r} holds {once!r}, which can be awaited only once"
        raise TypeError(
            f"retry needs activities that can run again, but {what}: give the async "
            "function itself (step('x', fetch), not step('x', fetch())), a (function, *args) "
            "tuple, or a Chain or Group of those"
        )
    return retry


def check_time_limit(time_limit: object) -> float | None:
    """``time_limit`` is None or a finite number of seconds above zero."""
    if time_limit is None:
        return None
    _number("time_limit", time_limit)
    assert isinstance(time_limit, int | float)
    if not 0 < time_limit < math.inf:
        raise ValueError(
            f"time_limit must be a finite number of seconds above 0, got {time_limit!r}"
        )
    return float(time_limit)


class Attempts:
    """The attempts of one step's activities: retried and time-limited as asked.

    :attr:`count` is how many were made, read once :meth:`run` has returned or
    raised. The last attempt's exception is raised as is.
    """

    __slots__ = ("count", "name", "on_retry", "retry", "time_limit")

    def __init__(
        self, name: str, retry: Retry | None, time_limit: float | None, on_retry: OnRetry
    ) -> None:
        self.name = name
        self.retry = retry
        self.time_limit = time_limit
        self.on_retry = on_retry
        self.count = 0

    async def run(self, activities: Activity) -> Any:
        """Run ``activities`` until an attempt succeeds or the retry gives up."""
        retry = self.retry
        if retry is None or retry.attempts == 1:
            return await self._attempt(activities)
        backoff = wait_exponential(
            multiplier=retry.delay, exp_base=retry.backoff, max=retry.max_delay
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retry.attempts),
            wait=backoff + wait_random(0, retry.jitter),
            retry=retry_if_exception_type(retry.on),
            sleep=_awaitable(retry.sleep),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return await retrying(self._attempt, activities)

    async def _attempt(self, activities: Activity) -> Any:
        self.count += 1
        if self.time_limit is None:
            return await start_activity(activities)
        with anyio.move_on_after(self.time_limit):
            return await start_activity(activities)
        # Only this scope's own deadline gets here: a cancellation from outside
        # goes on through it.
        raise StepTimeout(self.name, self.count, self.time_limit)

    async def _before_sleep(self, state: RetryCallState) -> None:
        assert state.outcome is not None
        error = state.outcome.exception()
        assert isinstance(error, Exception)  # only Exceptions are retried
        await self.on_retry(state.attempt_number, error, state.upcoming_sleep)


def _awaitable(sleep: Callable[[float], Awaitable[Any]]) -> Callable[[float], Awaitable[None]]:
    """``sleep``, refused with a message that says so when what it returns
    cannot be awaited: ``Retry`` can only check that it is callable, as
    tenacity's own sleeps are sync functions that return an awaitable."""

    async def checked(seconds: float) -> None:
        waiting = sleep(seconds)
        if not inspect.isawaitable(waiting):
            raise TypeError(
                f"Retry sleep must be an async callable such as anyio.sleep, but {sleep!r} "
                f"returned {shown(waiting)}, which cannot be awaited"
            )
        await waiting

    return checked


def _awaited_once(activities: Activity) -> object | None:
    """What in ``activities`` can be awaited only once, so that a second
    attempt could not run it: the activities themselves (a coroutine, future
    or task), or a coroutine held in a Chain, Group or ``(callable, *args)``
    tuple; None when there is none."""
    if inspect.isawaitable(activities) and not isinstance(activities, Chain | Group):
        return activities
    return next(coroutines_in(activities), None)


def _number(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")


def _seconds(what: str, value: object) -> None:
    _number(f"Retry {what}", value)
    assert isinstance(value, int | float)
    if not 0 <= value < math.inf:
        raise ValueError(f"Retry {what} must be a finite number of seconds >= 0, got {value!r}")
