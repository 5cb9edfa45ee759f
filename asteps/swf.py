"""The SWF bridge: bus signals out to SWF executions, SWF signals in to the bus.

- :class:`SwfSignalBridge` sends each bus signal its patterns cover (by
  default ``step.*``) to one or several SWF workflow executions with
  SignalWorkflowExecution, so a simpleflow workflow waiting on
  ``step.<name>`` wakes up when an asteps service completes or skips it.
- :class:`SwfSignalListener` polls an execution's history and publishes each
  ``WorkflowExecutionSignaled`` event on the bus, so ``runner.wait_signal``
  sees SWF-side signals.

Why it works this way:

- Order: one sender task per execution sends that execution's signals one at
  a time, in publication order. The bridge reads the bus with a blocking
  subscription, so it never drops a signal; a publisher waits instead.
- Nothing is dropped silently: a signal that cannot be delivered (refused
  because too large, unknown execution, still failing after botocore's
  retries, or still pending when the drain time on exit runs out) is logged at
  ERROR as it happens, kept in :attr:`SwfSignalBridge.undelivered`, and raised
  as :class:`SignalDeliveryError` when the bridge closes.
- No echo: when one execution is bridged both ways, the listener recognises
  the signals the bridge sent (same domain, workflow id, name and input) and
  does not publish them again, and the bridge never sends a signal back to
  the execution it came from.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from botocore.exceptions import BotoCoreError, ClientError

from ._aws import client_config as aws_config
from ._bus import EventBus, Signal, Subscription
from .errors import SignalDeliveryError, SignalError, describe

logger = logging.getLogger("asteps.swf")

SWF_INPUT_LIMIT = 32_768
"""SignalWorkflowExecution's ``input`` is at most 32,768 characters."""
SWF_SIGNAL_NAME_LIMIT = 256

Execution = tuple[str, str | None]
"""``(workflow_id, run_id)``; a ``None`` run id means the open run."""


@dataclass(frozen=True)
class Undelivered:
    """A signal that did not reach an execution, and why."""

    execution: Execution
    signal: Signal
    reason: str


def swf_input(name: str, payload: Any) -> str:
    """The ``input`` SWF receives for a signal: its payload as JSON.

    Raises :class:`SignalError` (never truncates) when the name or the input
    exceeds SWF's limits, or the payload is not JSON-serialisable.
    """
    if len(name) > SWF_SIGNAL_NAME_LIMIT:
        raise SignalError(
            f"signal name {name[:40]!r}... is {len(name)} characters; SWF allows "
            f"{SWF_SIGNAL_NAME_LIMIT}: use a shorter step name"
        )
    try:
        text = json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise SignalError(f"payload of signal {name!r} is not JSON-serialisable: {exc}") from None
    if len(text) > SWF_INPUT_LIMIT:
        raise SignalError(
            f"payload of signal {name!r} is {len(text)} characters of JSON; SWF allows "
            f"{SWF_INPUT_LIMIT}: send a reference (an S3 key, say) instead of the data"
        )
    return text


def execution_source(domain: str, workflow_id: str, run_id: str | None) -> str:
    """The ``Signal.source`` of a signal that came from this SWF execution."""
    return f"swf:{domain}/{workflow_id}/{run_id or ''}"


def _comes_from(signal: Signal, domain: str, workflow_id: str) -> bool:
    return signal.source is not None and signal.source.startswith(f"swf:{domain}/{workflow_id}/")


_SentKey = tuple[str, str, str, str]  # domain, workflow id, signal name, input


class _EchoGuard:
    """Per bus: the signals bridges sent to executions that a listener on the
    same bus watches, so that listener can tell them from new signals.

    Only watched executions are remembered, and each entry is forgotten when
    the listener sees it (or stops watching), so nothing grows without bound.
    """

    def __init__(self) -> None:
        self.watched: Counter[tuple[str, str]] = Counter()
        self.sent: Counter[_SentKey] = Counter()

    def watch(self, domain: str, workflow_id: str) -> None:
        self.watched[domain, workflow_id] += 1

    def unwatch(self, domain: str, workflow_id: str) -> None:
        self.watched[domain, workflow_id] -= 1
        if self.watched[domain, workflow_id] <= 0:
            del self.watched[domain, workflow_id]
            for key in [k for k in self.sent if k[:2] == (domain, workflow_id)]:
                del self.sent[key]

    def sending(self, key: _SentKey) -> bool:
        """Remember a signal about to be sent, if a listener watches its target."""
        if key[:2] not in self.watched:
            return False
        self.sent[key] += 1
        return True

    def not_sent(self, key: _SentKey) -> None:
        self._forget(key)

    def is_echo(self, key: _SentKey) -> bool:
        """True (once per send) when a bridge on this bus sent this signal."""
        if self.sent.get(key, 0) <= 0:
            return False
        self._forget(key)
        return True

    def _forget(self, key: _SentKey) -> None:
        self.sent[key] -= 1
        if self.sent[key] <= 0:
            del self.sent[key]


_guards: weakref.WeakKeyDictionary[EventBus, _EchoGuard] = weakref.WeakKeyDictionary()


def _echo_guard(bus: EventBus) -> _EchoGuard:
    return _guards.setdefault(bus, _EchoGuard())


def _normalise_executions(executions: Execution | Iterable[Execution]) -> list[Execution]:
    if (
        isinstance(executions, tuple)
        and len(executions) == 2
        and isinstance(executions[0], str)
        and (executions[1] is None or isinstance(executions[1], str))
    ):
        return [executions]
    found = [tuple(e) for e in executions]
    if not found:
        raise SignalError("executions is empty: give (workflow_id, run_id) pairs to signal")
    for e in found:
        if len(e) != 2 or not isinstance(e[0], str) or not e[0]:
            raise SignalError(f"execution {e!r} is not a (workflow_id, run_id or None) pair")
    return list(dict.fromkeys(found))


class _SwfClient:
    """Opens one aioboto3 SWF client and turns its errors into ours."""

    def __init__(
        self,
        session: aioboto3.Session | None,
        endpoint_url: str | None,
        region_name: str | None,
        client_config: AioConfig | None,
    ) -> None:
        self._config = aws_config(client_config)
        self._session = session or aioboto3.Session()
        self._endpoint_url = endpoint_url
        self._region_name = region_name

    async def open(self, stack: AsyncExitStack) -> Any:
        return await stack.enter_async_context(
            self._session.client(
                "swf",
                endpoint_url=self._endpoint_url,
                region_name=self._region_name,
                config=self._config,
            )
        )


async def _check_domain(client: Any, domain: str) -> None:
    try:
        await client.describe_domain(name=domain)
    except ClientError as exc:
        raise SignalError(
            f"SWF domain {domain!r}: {_explain(exc)}; check the domain name and region"
        ) from exc


async def _resolve_run(client: Any, domain: str, workflow_id: str, run_id: str | None) -> str:
    """The run id to use: the given one (checked), or the open run's."""
    try:
        if run_id is not None:
            await client.describe_workflow_execution(
                domain=domain, execution={"workflowId": workflow_id, "runId": run_id}
            )
            return run_id
        page = await client.list_open_workflow_executions(
            domain=domain,
            startTimeFilter={"oldestDate": 0},
            executionFilter={"workflowId": workflow_id},
        )
    except ClientError as exc:
        raise SignalError(
            f"SWF execution {workflow_id!r} (run {run_id or 'open'}) in domain {domain!r}: "
            f"{_explain(exc)}; check the workflow id and run id"
        ) from exc
    infos = page.get("executionInfos", [])
    if not infos:
        raise SignalError(
            f"SWF execution {workflow_id!r} has no open run in domain {domain!r}: start it, "
            "or give the run id of a closed one"
        )
    return str(max(infos, key=lambda i: i["startTimestamp"])["execution"]["runId"])


def _explain(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return describe(exc)


class SwfSignalBridge:
    """Send bus signals to SWF executions while the context is open.

    ``executions`` is one ``(workflow_id, run_id | None)`` pair or several
    (each signal goes to all of them). ``patterns`` select the bus signals to
    send (``("step",)``: every ``step.<name>``). On exit, what is pending is
    sent within ``drain_timeout`` seconds; anything undelivered is raised as
    :class:`SignalDeliveryError` (or only logged and kept in
    :attr:`undelivered` when the block is already raising).
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        domain: str,
        executions: Execution | Iterable[Execution],
        patterns: Iterable[str] = ("step",),
        session: aioboto3.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: AioConfig | None = None,
        drain_timeout: float = 10.0,
        buffer: int = 1024,
    ) -> None:
        if not domain:
            raise SignalError("domain is empty: give the SWF domain of the executions")
        self.bus = bus
        self.domain = domain
        self.executions = _normalise_executions(executions)
        self.patterns = tuple(patterns)
        self.drain_timeout = drain_timeout
        self.sent = 0
        self.undelivered: list[Undelivered] = []
        self._buffer = buffer
        self._client_factory = _SwfClient(session, endpoint_url, region_name, client_config)
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._subscription: Subscription | None = None
        self._task_group: TaskGroup | None = None
        self._queues: dict[Execution, MemoryObjectSendStream[tuple[Signal, str]]] = {}
        self._pending: dict[Execution, MemoryObjectReceiveStream[tuple[Signal, str]]] = {}
        self._in_flight: dict[Execution, Signal] = {}
        self._dispatching: tuple[Signal, list[Execution]] | None = None
        self._finished = anyio.Event()
        self._senders_left = len(self.executions)
        self._worker_scopes: list[anyio.CancelScope] = []

    async def __aenter__(self) -> SwfSignalBridge:
        stack = AsyncExitStack()
        try:
            self._client = await self._client_factory.open(stack)
            await _check_domain(self._client, self.domain)
            for workflow_id, run_id in self.executions:
                await _resolve_run(self._client, self.domain, workflow_id, run_id)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._subscription = self.bus.attach(self.patterns, buffer=self._buffer, overflow="block")
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for execution in self.executions:
            send, receive = anyio.create_memory_object_stream[tuple[Signal, str]](self._buffer)
            self._queues[execution] = send
            self._pending[execution] = receive
            self._task_group.start_soon(self._shielded, self._sender, execution, receive)
        self._task_group.start_soon(self._shielded, self._dispatch, self._subscription)
        return self

    async def _shielded(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        # The bridge's workers are shielded from the host's cancellation, so
        # that what was published before it is still delivered (within the
        # drain timeout, which cancels them explicitly).
        with anyio.CancelScope(shield=True) as scope:
            self._worker_scopes.append(scope)
            await work(*args)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._subscription is not None
        assert self._task_group is not None
        self.bus.detach(self._subscription)  # no new signals; what is buffered drains
        # Shielded: even when the host is being cancelled, the drain gets its
        # bounded time; the cancellation is delivered again right after.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.drain_timeout) as drained:
            await self._finished.wait()
        if drained.cancelled_caught:
            for scope in self._worker_scopes:
                scope.cancel()
        try:
            await self._task_group.__aexit__(None, None, None)
            self._collect_leftovers(drained.cancelled_caught)
        finally:
            self._subscription._close()
            if self._stack is not None:
                with anyio.CancelScope(shield=True):
                    await self._stack.aclose()
        if self.undelivered and exc_type is None:
            raise SignalDeliveryError(self.undelivered)

    async def send(self, name: str, payload: Any = None) -> None:
        """Send one signal to every execution now, raising on any failure."""
        text = swf_input(name, payload)
        signal = Signal(name, payload)
        failures: list[Undelivered] = []
        for execution in self.executions:
            reason = await self._signal(execution, signal, text)
            if reason is not None:
                failures.append(Undelivered(execution, signal, reason))
        if failures:
            raise SignalDeliveryError(failures)

    async def _dispatch(self, subscription: Subscription) -> None:
        try:
            async for signal in subscription:
                try:
                    text = swf_input(signal.name, signal.payload)
                except SignalError as exc:
                    for execution in self.executions:
                        self._give_up(execution, signal, str(exc))
                    continue
                targets = self._targets(signal)
                for i, execution in enumerate(targets):
                    self._dispatching = (signal, targets[i:])  # for the exit report
                    await self._queues[execution].send((signal, text))
                self._dispatching = None
        finally:
            # However this ends, no publisher may block on a bridge that stopped
            # reading (the subscription blocks when full); what it still holds
            # is reported on exit.
            self.bus.detach(subscription)
            for queue in self._queues.values():
                queue.close()

    def _targets(self, signal: Signal) -> list[Execution]:
        # Never send a signal back to the execution it came from.
        return [e for e in self.executions if not _comes_from(signal, self.domain, e[0])]

    async def _sender(
        self, execution: Execution, receive: MemoryObjectReceiveStream[tuple[Signal, str]]
    ) -> None:
        try:
            async for signal, text in receive:
                self._in_flight[execution] = signal
                reason = await self._signal(execution, signal, text)
                del self._in_flight[execution]
                if reason is not None:
                    self._give_up(execution, signal, reason)
        finally:
            self._senders_left -= 1
            if self._senders_left == 0:
                self._finished.set()

    async def _signal(self, execution: Execution, signal: Signal, text: str) -> str | None:
        """Send one signal; the reason it failed, or None."""
        workflow_id, run_id = execution
        key = (self.domain, workflow_id, signal.name, text)
        guard = _echo_guard(self.bus)
        # Before sending: the listener may see it in the history before we return.
        remembered = guard.sending(key)
        kwargs: dict[str, Any] = {
            "domain": self.domain,
            "workflowId": workflow_id,
            "signalName": signal.name,
            "input": text,
        }
        if run_id:
            kwargs["runId"] = run_id
        try:
            await self._client.signal_workflow_execution(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            if remembered:
                guard.not_sent(key)
            return _explain(exc)
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

    def _collect_leftovers(self, timed_out: bool) -> None:
        reason = f"still pending when the bridge closed ({self.drain_timeout}s drain timeout)"
        for execution, signal in list(self._in_flight.items()):
            self._give_up(
                execution, signal, f"{reason}; it was being sent and may have reached SWF"
            )
        self._in_flight.clear()
        if self._dispatching is not None:
            signal, targets = self._dispatching
            for execution in targets:
                self._give_up(execution, signal, reason)
            self._dispatching = None
        for execution, receive in self._pending.items():
            while True:
                try:
                    signal, _ = receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                self._give_up(execution, signal, reason)
            receive.close()
        if self._subscription is not None:
            for signal in self._subscription.receive_nowait_all():
                for execution in self._targets(signal):
                    self._give_up(execution, signal, reason)
        if timed_out:
            logger.error("SWF bridge closed before draining: %d undelivered", len(self.undelivered))


class SwfSignalListener:
    """Publish the signals an SWF execution receives on the bus.

    Polls GetWorkflowExecutionHistory every ``poll_interval`` seconds (newest
    events first, stopping at the last event already seen, so a long history
    is read once). Each ``WorkflowExecutionSignaled`` event is published under
    its signal name, its input decoded from JSON when it is JSON, with
    ``source`` set to the execution. No signal is published twice.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        domain: str,
        workflow_id: str,
        run_id: str | None = None,
        poll_interval: float = 1.0,
        session: aioboto3.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: AioConfig | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise SignalError(f"poll_interval must be positive, got {poll_interval}")
        self.bus = bus
        self.domain = domain
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.published = 0
        self.last_event_id = 0
        self.closed = False
        """True once the history shows the execution closed: polling stops then."""
        self._polling = anyio.Lock()
        self._client_factory = _SwfClient(session, endpoint_url, region_name, client_config)
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> SwfSignalListener:
        stack = AsyncExitStack()
        try:
            self._client = await self._client_factory.open(stack)
            await _check_domain(self._client, self.domain)
            self.run_id = await _resolve_run(
                self._client, self.domain, self.workflow_id, self.run_id
            )
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        _echo_guard(self.bus).watch(self.domain, self.workflow_id)
        self._task_group.start_soon(self._poll_forever)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task_group is not None
        assert self._stack is not None
        self._task_group.cancel_scope.cancel()
        try:
            await self._stack.aclose()
        finally:
            _echo_guard(self.bus).unwatch(self.domain, self.workflow_id)

    @property
    def source(self) -> str:
        """The ``Signal.source`` of the signals this listener publishes."""
        return execution_source(self.domain, self.workflow_id, self.run_id)

    async def poll_once(self) -> int:
        """Read the events new since the last poll; publish its signals. Returns
        how many signals were published."""
        async with self._polling:  # the poll loop and explicit calls never overlap
            return await self._poll()

    async def _poll(self) -> int:
        events = await self._new_events()
        published = 0
        guard = _echo_guard(self.bus)
        for event in events:
            self.last_event_id = max(self.last_event_id, int(event["eventId"]))
            if event.get("eventType") in _CLOSING_EVENTS:
                self.closed = True
            if event.get("eventType") != "WorkflowExecutionSignaled":
                continue
            attrs = event.get("workflowExecutionSignaledEventAttributes", {})
            name = attrs.get("signalName", "")
            raw = attrs.get("input")
            key = (self.domain, self.workflow_id, name, raw)
            if raw is not None and guard.is_echo(key):
                continue  # a bridge on this bus sent it: not a new signal
            await self.bus.publish(name, _decode(raw), source=self.source)
            published += 1
        self.published += published
        return published

    async def _new_events(self) -> list[dict[str, Any]]:
        assert self._client is not None
        newest_first: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "domain": self.domain,
            "execution": {"workflowId": self.workflow_id, "runId": self.run_id},
            "reverseOrder": True,
        }
        while True:
            try:
                page = await self._client.get_workflow_execution_history(**kwargs)
            except ClientError as exc:
                raise SignalError(
                    f"cannot read the history of SWF execution {self.workflow_id!r} in domain "
                    f"{self.domain!r}: {_explain(exc)}"
                ) from exc
            for event in page.get("events", []):
                if int(event["eventId"]) <= self.last_event_id:
                    return newest_first[::-1]
                newest_first.append(event)
            token = page.get("nextPageToken")
            if not token:
                return newest_first[::-1]
            kwargs["nextPageToken"] = token

    async def _poll_forever(self) -> None:
        while not self.closed:
            try:
                await self.poll_once()
            except (SignalError, BotoCoreError) as exc:
                logger.warning("SWF listener on %s: %s", self.workflow_id, exc)
            await anyio.sleep(self.poll_interval)
        logger.info("SWF execution %s closed: its listener stops polling", self.workflow_id)


# An execution's history ends with one of these; no signal can follow them.
_CLOSING_EVENTS = frozenset(
    {
        "WorkflowExecutionCompleted",
        "WorkflowExecutionFailed",
        "WorkflowExecutionTimedOut",
        "WorkflowExecutionCanceled",
        "WorkflowExecutionTerminated",
        "WorkflowExecutionContinuedAsNew",
    }
)


def _decode(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw
