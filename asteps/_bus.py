"""The event bus: where ``step.<name>`` signals and ``log.step`` markers flow.

Delivery policy (why it works this way): a runner must never wait on a slow
reader. Each subscription owns a bounded buffer (``buffer`` signals, 1,024 by
default). With ``overflow="drop_oldest"`` (the default) a full buffer drops
its oldest signal, counts it in :attr:`Subscription.dropped` and logs a
warning, so publishing never blocks. With ``overflow="block"`` publishing waits
for room: use it only for a reader that is always draining, such as the SWF
bridge, where losing a signal is worse than waiting for it. Such a reader that
stops in two stages (:meth:`Subscription.stop`, then reads what is left) also
gets the signals of the publishers already waiting for room when it stopped:
its iteration ends only once they are in.

Patterns match hierarchically, as for steps: ``step`` receives ``step.a`` and
``step.a.b``; ``*`` receives everything.

Memory: the bus remembers the last signal of each name, for waiters that ask
for a signal already published, but of at most ``remember`` names (1,024 by
default): signal names may come from outside (an SWF listener), and a
long-lived bus must not keep every one of them for ever. The name least
recently published or asked for is forgotten first; a waiter for it then
waits for its next signal.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._names import covers, validate_patterns
from .errors import SignalError, SignalTimeout

logger = logging.getLogger("asteps.bus")

Overflow = Literal["drop_oldest", "block"]
"""What a full subscription does with a new signal: drop its oldest, or make
the publisher wait."""
MAX_SIGNAL_NAME = 256
DEFAULT_REMEMBER = 1024
"""How many names a bus remembers the last signal of, unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One event on the bus. ``source`` says where it came from when not local
    (for instance ``swf:<domain>/<workflow_id>/<run_id>``)."""

    name: str
    payload: Any = None
    source: str | None = None


class Subscription:
    """An async iterator of the :class:`Signal` objects a pattern covers."""

    def __init__(self, patterns: tuple[str, ...], buffer: int, overflow: Overflow) -> None:
        self.patterns = patterns
        self.label = ", ".join(patterns)
        """The patterns as one string, for messages."""
        self.overflow: Overflow = overflow
        self.dropped = 0
        self._stopped = False
        self._delivering = 0
        """Publishers in :meth:`_deliver` with ``overflow="block"``."""
        send, receive = anyio.create_memory_object_stream[Signal](buffer)
        self._send: MemoryObjectSendStream[Signal] = send
        self._receive: MemoryObjectReceiveStream[Signal] = receive

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Signal:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self, timeout: float | None = None) -> Signal:  # noqa: ASYNC109
        """The next signal.

        Bound the wait with a cancel scope, as anyio and trio advise
        (``with anyio.fail_after(5): await sub.receive()``). ``timeout`` is a
        convenience kept for simpleflow's users: :class:`SignalTimeout` (a
        ``TimeoutError``) if nothing arrives in time.
        """
        try:
            with anyio.fail_after(timeout):
                return await self._receive.receive()
        except TimeoutError:
            raise SignalTimeout(f"no signal matching {self.label!r} within {timeout}s") from None

    def receive_nowait_all(self) -> list[Signal]:
        """Every signal waiting in the buffer, without waiting for more."""
        signals: list[Signal] = []
        while True:
            try:
                signals.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return signals

    def pending(self) -> int:
        """How many signals wait in the buffer."""
        return self._receive.statistics().current_buffer_used

    async def _deliver(self, signal: Signal) -> None:
        if self.overflow == "block":
            self._delivering += 1
            try:
                # The subscriber may leave while we wait for room: nothing to deliver then.
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._send.send(signal)
            finally:
                self._delivering -= 1
                if self._stopped and not self._delivering:
                    self._send.close()  # the stop waited for us: iteration can end
            return
        try:
            self._send.send_nowait(signal)
        except anyio.WouldBlock:
            self._receive.receive_nowait()
            self._send.send_nowait(signal)
            self.dropped += 1
            if _is_power_of_two(self.dropped):
                logger.warning(
                    "subscriber to %r is not keeping up: %d signals dropped so far",
                    self.label,
                    self.dropped,
                )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def matches(self, name: str) -> bool:
        """True when one of the subscription's patterns covers ``name`` (and it
        was not stopped)."""
        return not self._stopped and any(covers(p, name) for p in self.patterns)

    def stop(self) -> None:
        """Stop delivery: signals published from now on do not reach this
        subscription; what it buffered can still be read, then iteration
        ends. For owners that stop in two stages, such as the SWF bridge,
        which sends what was published before it closed.

        With ``overflow="block"``, the signals of publishers already waiting
        for room are not dropped: they come in as the buffer is read, and
        iteration ends after them (so keep reading, or the publishers wait).
        """
        self._stopped = True
        # Closing the stream now would withdraw the waiting publishers' signals
        # (anyio 4.16 makes their send raise): the last of them closes it.
        if not self._delivering:
            self._send.close()

    def _close(self) -> None:
        self._send.close()
        self._receive.close()


class _Waiter:
    __slots__ = ("event", "signal")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.signal: Signal | None = None


class EventBus:
    """In-process publish/subscribe of :class:`Signal` objects.

    The bus also remembers the last signal of each name, so a waiter may ask
    for one that was published before it started waiting (``include_past``),
    the way an SWF workflow sees a signal already in its history. It
    remembers at most ``remember`` names, forgetting the least recently used
    first (see the module docstring).
    """

    def __init__(
        self,
        *,
        buffer: int = 1024,
        overflow: Overflow = "drop_oldest",
        remember: int = DEFAULT_REMEMBER,
    ) -> None:
        check_buffer(buffer)
        _check_overflow(overflow)
        if isinstance(remember, bool) or not isinstance(remember, int) or remember < 1:
            raise ValueError(f"remember must be a positive int, got {remember!r}")
        self._buffer = buffer
        self._overflow: Overflow = overflow
        self._subscriptions: list[Subscription] = []
        self._waiters: dict[str, list[_Waiter]] = {}
        self._remember = remember
        self._last: OrderedDict[str, Signal] = OrderedDict()

    async def publish(self, name: str, payload: Any = None, *, source: str | None = None) -> Signal:
        """Deliver a signal to every subscription and waiter that it concerns."""
        _check_signal_name(name)
        signal = Signal(name, payload, source)
        self._last[name] = signal
        self._last.move_to_end(name)
        if len(self._last) > self._remember:
            self._last.popitem(last=False)  # the least recently used name
        waiters = self._waiters.pop(name, None)
        if waiters:
            for waiter in waiters:
                waiter.signal = signal
                waiter.event.set()
        # A snapshot: a subscription may leave while a blocking delivery waits,
        # and the ones after it must still receive this signal.
        for subscription in tuple(self._subscriptions):
            if subscription.matches(name):
                await subscription._deliver(signal)
        return signal

    @asynccontextmanager
    async def subscribe(
        self,
        pattern: str | Iterable[str],
        *,
        buffer: int | None = None,
        overflow: Overflow | None = None,
    ) -> AsyncIterator[Subscription]:
        """Receive every signal a pattern covers while the context is open.

        ``pattern`` is one pattern or several (one buffer, publication order).
        """
        subscription = self._attach(pattern, buffer=buffer, overflow=overflow)
        try:
            yield subscription
        finally:
            self._detach(subscription)
            subscription._close()

    def attach(
        self,
        pattern: str | Iterable[str],
        *,
        buffer: int | None = None,
        overflow: Overflow | None = None,
    ) -> Subscription:
        """Deprecated: use :meth:`subscribe`, and :meth:`Subscription.stop` to
        stop delivery before leaving its block. Kept for one release."""
        warnings.warn(
            "EventBus.attach() is deprecated: use `async with bus.subscribe(...)` "
            "(and subscription.stop() for a stop in two stages)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._attach(pattern, buffer=buffer, overflow=overflow)

    def detach(self, subscription: Subscription) -> None:
        """Deprecated: leave the :meth:`subscribe` block, or call
        :meth:`Subscription.stop`. Kept for one release."""
        warnings.warn(
            "EventBus.detach() is deprecated: leave the `bus.subscribe()` block, or "
            "call subscription.stop()",
            DeprecationWarning,
            stacklevel=2,
        )
        self._detach(subscription)

    def _attach(
        self,
        pattern: str | Iterable[str],
        *,
        buffer: int | None,
        overflow: Overflow | None,
    ) -> Subscription:
        patterns = tuple(validate_patterns(pattern))
        if not patterns:
            raise SignalError("subscribe needs at least one pattern")
        if buffer is None:
            buffer = self._buffer
        if overflow is None:
            overflow = self._overflow
        check_buffer(buffer)
        _check_overflow(overflow)
        subscription = Subscription(patterns, buffer, overflow)
        self._subscriptions.append(subscription)
        return subscription

    def _detach(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``; what it buffered can still be read."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        subscription._send.close()

    def listening(self, name: str) -> bool:
        """True when a subscription or a waiter would receive signal ``name``."""
        if name in self._waiters:
            return True
        # A loop, not any() over a generator: asked for every marker of every step,
        # the generator alone was 5% of a skipped step (bench/instructions.py).
        for subscription in self._subscriptions:  # noqa: SIM110
            if subscription.matches(name):
                return True
        return False

    async def wait(
        self,
        name: str,
        timeout: float | None = None,  # noqa: ASYNC109 (a documented convenience)
        *,
        include_past: bool = False,
    ) -> Signal:
        """Wait for the next signal named exactly ``name``.

        With ``include_past=True`` a signal already published under that name
        is returned at once. Bound the wait with a cancel scope
        (``with anyio.fail_after(5): await bus.wait("step.a")``), which
        composes with the caller's own; ``timeout`` is a convenience that
        raises :class:`SignalTimeout` (a ``TimeoutError``).
        """
        _check_signal_name(name)  # no signal of another name is ever published
        if include_past and (seen := self._last.get(name)) is not None:
            self._last.move_to_end(name)
            return seen
        waiter = _Waiter()
        self._waiters.setdefault(name, []).append(waiter)
        try:
            with anyio.fail_after(timeout):
                await waiter.event.wait()
        except TimeoutError:
            raise SignalTimeout(f"signal {name!r} did not arrive within {timeout}s") from None
        finally:
            waiting = self._waiters.get(name)
            if waiting and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[name]
        assert waiter.signal is not None
        return waiter.signal


def _check_signal_name(name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_SIGNAL_NAME:
        raise SignalError(
            f"signal name must be a non-empty string of at most {MAX_SIGNAL_NAME} "
            f"characters, got {name!r}"
        )


def check_buffer(buffer: object) -> None:
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ValueError(f"buffer must be an int of at least 1, got {buffer!r}")


def _check_overflow(overflow: object) -> None:
    # Any other value used to mean "drop_oldest": "blok" dropped signals silently.
    if overflow not in ("drop_oldest", "block"):
        raise ValueError(f"overflow must be 'drop_oldest' or 'block', got {overflow!r}")


def _is_power_of_two(n: int) -> bool:
    return n > 0 and math.log2(n).is_integer()
