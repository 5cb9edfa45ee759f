"""Bus signals out to SWF executions: :class:`SwfSignalBridge`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from .._bus import EventBus, Signal, Subscription, check_buffer
from .._lifecycle import Resource
from ..errors import SignalDeliveryError, SignalError
from ._client import (
    Execution,
    SwfClientOptions,
    check_domain,
    explain,
    resolve_run,
)
from ._echo import EchoGuard
from ._resources import ShieldedExitStack, task_group
from ._signals import comes_from, swf_input

logger = logging.getLogger("asteps.swf")


@dataclass(frozen=True)
class Undelivered:
    """A signal that did not reach an execution, and why."""

    execution: Execution
    signal: Signal
    reason: str


class _Sender:
    """One execution's queue: its signals are sent one at a time, in the order
    they were queued, by :meth:`run`."""

    def __init__(
        self,
        execution: Execution,
        buffer: int,
        deliver: Callable[[Execution, Signal, str], Awaitable[None]],
    ) -> None:
        self.execution = execution
        self.in_flight: Signal | None = None
        """The signal being sent, if a send is under way."""
        self._deliver = deliver
        self._queue, self._pending = anyio.create_memory_object_stream[tuple[Signal, str]](buffer)

    async def put(self, signal: Signal, text: str) -> None:
        """Queue a signal (``text`` is its SWF input); waits while the queue is full."""
        await self._queue.send((signal, text))

    def no_more(self) -> None:
        """Nothing more will be queued: :meth:`run` returns once the queue is empty."""
        self._queue.close()

    async def run(self) -> None:
        async for signal, text in self._pending:
            self.in_flight = signal
            await self._deliver(self.execution, signal, text)
            self.in_flight = None

    def leftovers(self) -> list[tuple[Signal, bool]]:
        """What was not sent, oldest first, and whether each was cut off during
        its send (so may have reached SWF). Empties and closes the queue."""
        left = [(self.in_flight, True)] if self.in_flight is not None else []
        self.in_flight = None
        while True:
            try:
                signal, _ = self._pending.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            left.append((signal, False))
        self._queue.close()
        self._pending.close()
        return left


class SwfSignalBridge(Resource):
    """Send bus signals to SWF executions while the context is open.

    ``executions`` is one :class:`Execution` or several (each signal goes to
    all of them); ``Execution(workflow_id)``, without a run id, means
    whichever run is open when a signal is sent. A plain pair of strings
    (``("a", "b")``) is still read as one ``(workflow_id, run_id)``, with a
    ``DeprecationWarning``: it could as well mean two workflow ids.
    ``patterns`` select the bus signals to send (``("step",)``: every
    ``step.<name>``). On exit (or :meth:`aclose`), what is pending is sent within
    ``drain_timeout`` seconds; anything undelivered is raised as
    :class:`SignalDeliveryError` (or only logged and kept in
    :attr:`undelivered` when the block is already raising).

    The bridge reads the bus through a ``buffer`` of signals that makes
    publishers wait for room when full (``overflow="block"``). A publisher
    still waiting when the bridge closes loses nothing: its signal is drained
    like those buffered, sent or else listed in :class:`SignalDeliveryError`,
    and its ``publish`` returns once the bridge has taken it. Publishing never
    raises because of the bridge. A signal published once closing has begun
    is not the bridge's, as after it closed.

    With an ``echo_guard`` shared with an :class:`SwfSignalListener` on the
    same execution, that listener does not publish again what this bridge
    sent. Opened once (``async with``); it cannot be reopened after it closed.
    Opening it raises :class:`~asteps.errors.SwfNotSetUp` for a domain SWF
    does not know (:class:`~asteps.errors.SwfError` when SWF cannot be asked),
    :class:`~asteps.errors.SignalError` for an execution it does not know.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        domain: str,
        executions: Execution
        | tuple[str, str | None]
        | Iterable[Execution | tuple[str, str | None]],
        patterns: Iterable[str] = ("step",),
        echo_guard: EchoGuard | None = None,
        session: aioboto3.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: AioConfig | None = None,
        drain_timeout: float = 10.0,
        buffer: int = 1024,
    ) -> None:
        if not domain:
            raise SignalError("domain is empty: give the SWF domain of the executions")
        check_buffer(buffer)  # before any request to SWF
        self.bus = bus
        self.domain = domain
        self.executions = _normalise_executions(executions)
        self.patterns = tuple(patterns)
        self.echo_guard = echo_guard
        self.drain_timeout = drain_timeout
        self.sent = 0
        self.undelivered: list[Undelivered] = []
        super().__init__("this SwfSignalBridge")
        self._options = SwfClientOptions(session, endpoint_url, region_name, client_config)
        self._buffer = buffer
        self._resources = ShieldedExitStack()
        self._client: Any = None
        self._subscription: Subscription | None = None
        self._senders: list[_Sender] = []
        self._dispatching: tuple[Signal, list[Execution]] | None = None
        """A signal being handed to the senders, and the executions still to get it."""
        # The workers run shielded from the host's cancellation, so that what
        # was published before it is still delivered; the drain timeout on
        # exit cancels this scope instead.
        self._workers = anyio.CancelScope(shield=True)
        self._workers_done = anyio.Event()
        self._drain_timed_out = False

    async def _acquire(self) -> None:
        stack = self._resources.open()
        self._client = await self._options.open(stack)
        await check_domain(self._client, self.domain)
        for workflow_id, run_id in self.executions:
            # A check only: the run found is not kept, since with a None
            # run id SWF signals the run open at the time of each send
            # (a restarted workflow's new run, say).
            await resolve_run(self._client, self.domain, workflow_id, run_id)
        self._subscription = await stack.enter_async_context(
            self.bus.subscribe(self.patterns, buffer=self._buffer, overflow="block")
        )
        self._senders = [_Sender(e, self._buffer, self._deliver) for e in self.executions]
        # Runs once the workers stopped, before the client closes.
        stack.push_async_callback(self._report_leftovers)
        tasks = await stack.enter_async_context(task_group())
        tasks.start_soon(self._work, self._subscription)
        stack.push_async_callback(self._drain)  # the first thing closing does

    async def _release(self, exc: BaseException | None) -> None:
        """Drain, stop and close (leaving the block or :meth:`aclose`), raising
        :class:`SignalDeliveryError` on a plain close if something was not
        delivered."""
        await self._resources.close(exc)
        if self.undelivered and exc is None:
            raise SignalDeliveryError(self.undelivered)

    async def _drain(self) -> None:
        assert self._subscription is not None
        self._subscription.stop()  # no new signals; what is buffered drains
        # Shielded: even when the host is being cancelled, the drain gets its
        # bounded time; the cancellation is delivered again right after.
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.drain_timeout) as drain:
                await self._workers_done.wait()
            if drain.cancelled_caught:
                self._drain_timed_out = True
                self._workers.cancel()

    @property
    def client(self) -> Any:
        """The aioboto3 SWF client (for event hooks and advanced use)."""
        self._lifecycle.check_open()
        return self._client

    async def send(self, name: str, payload: Any = None) -> None:
        """Send one signal to every execution now, raising on any failure."""
        self._lifecycle.check_open()
        text = swf_input(name, payload)
        signal = Signal(name, payload)
        failures: list[Undelivered] = []
        for execution in self.executions:
            reason = await self._signal(execution, signal, text)
            if reason is not None:
                failures.append(Undelivered(execution, signal, reason))
        if failures:
            raise SignalDeliveryError(failures)

    async def _work(self, subscription: Subscription) -> None:
        try:
            with self._workers:
                async with anyio.create_task_group() as workers:
                    for sender in self._senders:
                        workers.start_soon(sender.run)
                    workers.start_soon(self._dispatch, subscription)
        finally:
            self._workers_done.set()

    async def _dispatch(self, subscription: Subscription) -> None:
        try:
            async for signal in subscription:
                try:
                    text = swf_input(signal.name, signal.payload)
                except SignalError as exc:
                    for execution in self.executions:
                        self._give_up(execution, signal, str(exc))
                    continue
                targets = [s for s in self._senders if self._is_target(s.execution, signal)]
                for i, sender in enumerate(targets):
                    self._dispatching = (signal, [s.execution for s in targets[i:]])
                    await sender.put(signal, text)
                self._dispatching = None
        finally:
            # However this ends, no new publisher may block on a bridge that
            # stopped reading (the subscription blocks when full); what it still
            # holds, and the signals of publishers already waiting for room, are
            # reported on exit.
            subscription.stop()
            for sender in self._senders:
                sender.no_more()

    def _is_target(self, execution: Execution, signal: Signal) -> bool:
        # Never send a signal back to the execution it came from.
        return not comes_from(signal, self.domain, execution[0])

    async def _deliver(self, execution: Execution, signal: Signal, text: str) -> None:
        reason = await self._signal(execution, signal, text)
        if reason is not None:
            self._give_up(execution, signal, reason)

    async def _signal(self, execution: Execution, signal: Signal, text: str) -> str | None:
        """Send one signal; the reason it failed, or None."""
        workflow_id, run_id = execution
        key = (self.domain, workflow_id, signal.name, text)
        # Before sending: the listener may see it in the history before we return.
        remembered = self.echo_guard is not None and self.echo_guard.sending(key)
        kwargs: dict[str, Any] = {
            "domain": self.domain,
            "workflowId": workflow_id,
            "signalName": signal.name,
            "input": text,
        }
        if run_id:
            kwargs["runId"] = run_id
        answered = False
        try:
            await self._client.signal_workflow_execution(**kwargs)
            answered = True
        except (ClientError, BotoCoreError) as exc:
            return explain(exc)
        finally:
            # Not sent, or cut off before SWF answered (the drain timed out, the
            # host was cancelled): forget it, or a genuine signal with the same
            # name and input would later be swallowed as its echo.
            if remembered and not answered and self.echo_guard is not None:
                self.echo_guard.not_sent(key)
        self.sent += 1
        return None

    def _give_up(self, execution: Execution, signal: Signal, reason: str) -> None:
        logger.error(
            "signal %s not delivered to SWF execution %s in domain %s: %s",
            signal.name,
            execution[0],
            self.domain,
            reason,
        )
        self.undelivered.append(Undelivered(execution, signal, reason))

    async def _report_leftovers(self) -> None:
        reason = f"still pending when the bridge closed ({self.drain_timeout}s drain timeout)"
        for sender in self._senders:
            for signal, cut_off in sender.leftovers():
                if cut_off:
                    self._give_up(
                        sender.execution,
                        signal,
                        f"{reason}; it was being sent and may have reached SWF",
                    )
                else:
                    self._give_up(sender.execution, signal, reason)
        if self._dispatching is not None:
            signal, targets = self._dispatching
            for execution in targets:
                self._give_up(execution, signal, reason)
            self._dispatching = None
        if self._subscription is not None:
            # What the subscription holds, and the signals of publishers still
            # waiting for room: they are not dropped when it stops (see
            # Subscription.stop), and iteration ends once the last is in. Not
            # reading them would leave them, unreported, to the subscription's
            # close. Stopped here too: an open cut short never reached the drain.
            self._subscription.stop()
            for signal in [s async for s in self._subscription]:
                for execution in self.executions:
                    if self._is_target(execution, signal):
                        self._give_up(execution, signal, reason)
        if self._drain_timed_out:
            logger.error("SWF bridge closed before draining: %d undelivered", len(self.undelivered))


def _normalise_executions(
    executions: Execution | tuple[str, str | None] | Iterable[Execution | tuple[str, str | None]],
) -> list[Execution]:
    if isinstance(executions, Execution):
        return [executions]
    if (
        isinstance(executions, tuple)
        and len(executions) == 2
        and isinstance(executions[0], str)
        and (executions[1] is None or isinstance(executions[1], str))
    ):
        # ("a", "b") reads as one (workflow_id, run_id) pair, as in asteps 0.1;
        # it could as well mean two workflow ids: say which, once.
        warnings.warn(
            f"executions={executions!r} is read as one (workflow_id, run_id) pair; "
            "this form goes in the next release: pass Execution(workflow_id, run_id), "
            "or a list of executions such as [Execution('a'), Execution('b')]",
            DeprecationWarning,
            stacklevel=3,
        )
        return [Execution(*executions)]
    if isinstance(executions, str):
        raise SignalError(
            f"executions={executions!r} is a string: pass [Execution({executions!r})]"
        )
    found: list[Execution] = []
    for e in executions:
        pair = tuple(e)
        if len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
            raise SignalError(f"execution {e!r} is not a (workflow_id, run_id or None) pair")
        found.append(Execution(*pair))
    if not found:
        raise SignalError("executions is empty: give the executions to signal")
    return list(dict.fromkeys(found))
