"""SWF signals in to the bus: :class:`SwfSignalListener`."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from .._bus import EventBus
from .._lifecycle import Resource
from ..errors import SignalError
from ._client import SwfClientOptions, check_domain, explain, resolve_run
from ._decider import CLOSING_EVENTS
from ._echo import EchoGuard
from ._resources import ShieldedExitStack, task_group
from ._signals import decode_input, execution_source

logger = logging.getLogger("asteps.swf")


class SwfSignalListener(Resource):
    """Publish the signals an SWF execution receives on the bus.

    Polls GetWorkflowExecutionHistory every ``poll_interval`` seconds (newest
    events first, stopping at the last event already seen, so a long history
    is read once). Each ``WorkflowExecutionSignaled`` event is published under
    its signal name, its input decoded from JSON when it is JSON (an input
    nested deeper than ``MAX_DEPTH`` is published as its text, with a
    warning), with ``source`` set to the execution. No signal is published twice.

    A poll that fails is logged and tried again after a wait that doubles with
    each failure in a row, from ``poll_interval`` up to ``max_backoff`` seconds
    (an error that persists, an access denied say, is not retried at full
    speed forever); a poll that succeeds brings the wait back to
    ``poll_interval``. ``sleep`` is how the listener waits (``anyio.sleep``;
    tests pass their own).

    With an ``echo_guard`` shared with an :class:`SwfSignalBridge`, the
    signals that bridge sent are not published again; without one, every
    signal in the history is.

    Opened once (``async with``); it cannot be reopened after it closed.
    Opening it raises :class:`~asteps.errors.SwfNotSetUp` for a domain SWF
    does not know (:class:`~asteps.errors.SwfError` when SWF cannot be asked),
    :class:`~asteps.errors.SignalError` for an execution it does not know.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        domain: str,
        workflow_id: str,
        run_id: str | None = None,
        poll_interval: float = 1.0,
        max_backoff: float = 60.0,
        echo_guard: EchoGuard | None = None,
        session: aioboto3.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: AioConfig | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not (math.isfinite(poll_interval) and poll_interval > 0):
            raise SignalError(f"poll_interval must be a finite number over 0, got {poll_interval}")
        if not (math.isfinite(max_backoff) and max_backoff > 0):
            raise SignalError(f"max_backoff must be a finite number over 0, got {max_backoff}")
        self.bus = bus
        self.domain = domain
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.max_backoff = max(max_backoff, poll_interval)
        self._sleep = sleep
        self.echo_guard = echo_guard
        self.published = 0
        self.last_event_id = 0
        self.closed = False
        """True once the history shows the execution closed: polling stops then."""
        super().__init__("this SwfSignalListener")
        self._options = SwfClientOptions(session, endpoint_url, region_name, client_config)
        self._polling = anyio.Lock()
        self._resources = ShieldedExitStack()
        self._client: Any = None

    async def _acquire(self) -> None:
        stack = self._resources.open()
        self._client = await self._options.open(stack)
        await check_domain(self._client, self.domain)
        self.run_id = await resolve_run(self._client, self.domain, self.workflow_id, self.run_id)
        if self.echo_guard is not None:
            self.echo_guard.watch(self.domain, self.workflow_id)
            stack.callback(self.echo_guard.unwatch, self.domain, self.workflow_id)
        tasks = await stack.enter_async_context(task_group())
        tasks.start_soon(self._poll_forever)
        stack.callback(tasks.cancel_scope.cancel)  # the poll loop has no end of its own

    async def _release(self, exc: BaseException | None) -> None:
        """Stop polling and close the client (leaving the block or :meth:`aclose`)."""
        await self._resources.close(exc)

    @property
    def client(self) -> Any:
        """The aioboto3 SWF client (for event hooks and advanced use)."""
        self._lifecycle.check_open()
        return self._client

    @property
    def source(self) -> str:
        """The ``Signal.source`` of the signals this listener publishes."""
        return execution_source(self.domain, self.workflow_id, self.run_id)

    async def poll_once(self) -> int:
        """Read the events new since the last poll; publish its signals. Returns
        how many signals were published."""
        self._lifecycle.check_open()
        async with self._polling:  # the poll loop and explicit calls never overlap
            return await self._poll()

    async def _poll(self) -> int:
        published = 0
        for event in await self._new_events():
            self.last_event_id = max(self.last_event_id, int(event["eventId"]))
            if event.get("eventType") in CLOSING_EVENTS:
                self.closed = True
            if event.get("eventType") != "WorkflowExecutionSignaled":
                continue
            attrs = event.get("workflowExecutionSignaledEventAttributes", {})
            name = attrs.get("signalName", "")
            raw = attrs.get("input")
            if raw is not None and self._is_echo(name, raw):
                continue  # the bridge sharing our guard sent it: not a new signal
            await self.bus.publish(name, decode_input(raw, name), source=self.source)
            published += 1
        self.published += published
        return published

    def _is_echo(self, name: str, raw: str) -> bool:
        if self.echo_guard is None:
            return False
        return self.echo_guard.is_echo((self.domain, self.workflow_id, name, raw))

    def backoff(self, failures: int) -> float:
        """The wait after ``failures`` failed polls in a row: ``poll_interval``
        doubled per failure after the first, at most ``max_backoff``."""
        return min(self.poll_interval * 2.0 ** min(failures - 1, 64), self.max_backoff)

    async def _new_events(self) -> list[dict[str, Any]]:
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
                    f"{self.domain!r}: {explain(exc)}"
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
        failures = 0
        while not self.closed:
            try:
                async with self._polling:
                    await self._poll()
            except (SignalError, BotoCoreError) as exc:
                failures += 1
                wait = self.backoff(failures)
                logger.warning(
                    "SWF listener on %s: %s; polling again in %.3g s", self.workflow_id, exc, wait
                )
            else:
                failures, wait = 0, self.poll_interval
            await self._sleep(wait)
        logger.info("SWF execution %s closed: its listener stops polling", self.workflow_id)
