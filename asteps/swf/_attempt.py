"""One attempt at an execution, as the worker makes it: from the activity task
SWF handed out to SWF's answer (:class:`Attempts`), and the answer itself
(:func:`respond`).

The worker (:mod:`.worker`) polls and holds the slots; this module runs what
one task asks and says how it went. What it runs is in :mod:`._activity`.

Why it answers this way:

- An input that can never run (a flow that is not the worker's, a store not
  allowed, a malformed field) fails the execution at once, not retried.
- A store or bridge that cannot be opened is a retryable failure; once the
  steps ran and are marked, a signal that did not go out is said, not retried.
- Answers to SWF after a flow ran (completed, failed, canceled) are shielded
  from the worker's stop: the work is done, and SWF must hear it.
- A worker that stops before the flow ends hands the attempt back as a
  failure marked drained, which the decider retries at once without counting.
- What SWF no longer knows (a task completed twice, a timed-out task, a
  closed execution) is logged and dropped: another worker has it, or had it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from .._bus import EventBus
from .._flows import Flow
from .._names import shown
from ..errors import (
    ClaimsNotSupported,
    FlowError,
    InvalidName,
    SignalError,
    StoreError,
    SwfError,
    describe,
)
from ._activity import FlowReport, Heartbeat, StoreAllowList, Stores, accept, run_flow
from ._client import UNKNOWN_RESOURCE, Execution, SwfClientOptions, error_code, explain
from ._types import SWF_REASON_LIMIT, FlowInput, FlowInputError, clip, failure_details
from .bridge import SwfSignalBridge

logger = logging.getLogger("asteps.swf.worker")

RESPOND_TIMEOUT = 15.0
"""How long a shielded answer to SWF may take while the worker stops."""


@dataclass(frozen=True)
class Attempts:
    """How a worker runs the activity tasks it took: its flow, where the flow
    may run, and how it talks to SWF. ``report`` hears of an attempt the
    worker's stop cut short (the others are returned by :meth:`run`)."""

    flow: Flow
    flow_names: frozenset[str]
    stores: StoreAllowList
    domain: str
    heartbeat: float
    signals: bool
    exclusive: bool
    lease: float
    options: SwfClientOptions
    report: Callable[[FlowReport], None]

    async def run(self, client: Any, task: dict[str, Any], stores: Stores) -> FlowReport:
        """Run one activity task and answer SWF; how it went."""
        token = task["taskToken"]
        workflow_id = task["workflowExecution"]["workflowId"]
        run_id = task["workflowExecution"]["runId"]
        try:
            spec, store_url = accept(task, self.flow, self.flow_names, self.stores)
        except (FlowInputError, FlowError, InvalidName) as exc:
            logger.warning("workflow %s: input refused, not retried: %s", shown(workflow_id), exc)
            refused = FlowReport(workflow_id, run_id, ok=False, error=str(exc), retryable=False)
            with shielded():
                ok = await self._failed(client, token, refused)
            refused.outcome = "failed" if ok else "dropped"
            return refused
        heartbeat = Heartbeat(client, token, self.heartbeat, workflow_id)
        report: FlowReport | None = None
        started = time.perf_counter()
        try:
            async with anyio.create_task_group() as flow_and_heartbeat:
                flow_and_heartbeat.start_soon(heartbeat.run, flow_and_heartbeat.cancel_scope)
                try:
                    report = await self._flow(stores, store_url, spec, workflow_id, run_id)
                finally:
                    flow_and_heartbeat.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            # The worker stopped before the flow finished: say so, so that
            # another worker retries it now rather than after a timeout.
            stopped = FlowReport(
                workflow_id,
                run_id,
                ok=False,
                error="the worker stopped before the flow ended",
                duration=time.perf_counter() - started,
                outcome="stopped",
            )
            with shielded():
                await self._failed(client, token, stopped, drained=True)
            self.report(stopped)
            raise
        if report is None:  # SWF cancelled the attempt, or forgot it
            report = FlowReport(
                workflow_id, run_id, ok=False, duration=time.perf_counter() - started
            )
            if heartbeat.cancel_requested:
                report.outcome, report.error = "canceled", "cancelled at SWF's request"
                with shielded():
                    await respond(
                        client.respond_activity_task_canceled, workflow_id, taskToken=token
                    )
            else:
                report.outcome, report.error = "dropped", "SWF no longer knows this attempt"
            return report
        # The flow ran: SWF must hear how, even if the worker is stopping now.
        with shielded():
            if report.ok:
                answered = await respond(
                    client.respond_activity_task_completed,
                    workflow_id,
                    taskToken=token,
                    result=report.result(),
                )
            else:
                answered = await self._failed(client, token, report)
        if not answered:
            report.outcome = "dropped"
        return report

    async def _flow(
        self, stores: Stores, store_url: str, spec: FlowInput, workflow_id: str, run_id: str
    ) -> FlowReport:
        """The flow on its store, with a signal bridge when asked; a store or
        bridge that cannot be opened is a (retryable) failure, a store that
        refuses the runner (exclusive steps, the prefix) one not retried."""
        bus = EventBus()
        bridge: Any = nullcontext()
        if self.signals:
            bridge = SwfSignalBridge(
                bus,
                domain=self.domain,
                executions=Execution(workflow_id, run_id),
                session=self.options.session,
                endpoint_url=self.options.endpoint_url,
                region_name=self.options.region_name,
                client_config=self.options.config,
            )
        report: FlowReport | None = None
        try:
            store = await stores.get(store_url)
            async with bridge:
                report = await run_flow(
                    self.flow,
                    store,
                    spec,
                    workflow_id,
                    run_id,
                    bus,
                    exclusive=self.exclusive,
                    lease=self.lease,
                )
        except (ClaimsNotSupported, InvalidName) as exc:
            # The runner refused the store or its prefix (no room in its
            # keys) as it was built: no attempt can do better, so not retried.
            return FlowReport(
                workflow_id, run_id, ok=False, error=str(exc), retryable=False, outcome="failed"
            )
        except (StoreError, SignalError, SwfError) as exc:
            if report is None:
                return FlowReport(
                    workflow_id, run_id, ok=False, error=describe(exc), outcome="failed"
                )
            # The steps ran and are marked: an undelivered signal is said, not retried.
            logger.warning("workflow %s: %s", workflow_id, exc)
        assert report is not None
        return report

    async def _failed(
        self, client: Any, token: str, report: FlowReport, *, drained: bool = False
    ) -> bool:
        error = report.error or "failed"
        return await respond(
            client.respond_activity_task_failed,
            report.workflow_id,
            taskToken=token,
            reason=clip(error, SWF_REASON_LIMIT),
            details=failure_details(error, retryable=report.retryable, drained=drained),
        )


@contextmanager
def shielded() -> Iterator[None]:
    """An answer to SWF that the worker's stop must not cut short, bounded in time."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(RESPOND_TIMEOUT):
        yield


async def respond(call: Callable[..., Any], what: str, **kwargs: Any) -> bool:
    """Answer SWF; False when it refused. A task SWF no longer knows (timed out,
    done by another worker, execution closed) is logged and dropped."""
    try:
        await call(**kwargs)
    except ClientError as exc:
        if error_code(exc) in UNKNOWN_RESOURCE:
            logger.info("%s: SWF no longer knows this task (%s): dropped", what, explain(exc))
        else:
            logger.warning("%s: SWF refused the answer: %s", what, explain(exc))
        return False
    except BotoCoreError as exc:
        logger.warning("%s: could not answer SWF: %s", what, explain(exc))
        return False
    return True
