"""One activity task: the flow for one workflow id, as ``asteps run`` runs it.

:func:`accept` checks a task's input before anything runs (what it refuses
can never succeed, so it is not retried); :func:`run_flow` runs the flow with
a :class:`Runner` whose ``run_id`` is the SWF run id; :class:`Heartbeat`
tells SWF the worker is alive and hears a cancellation request.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from .._batch import BatchRun
from .._bus import EventBus
from .._flows import Flow, check_params
from .._names import (
    check_prefix_per_workflow,
    format_prefix,
    validate_patterns,
    validate_workflow_id,
)
from ..stores.base import DoneStore
from ..stores.urls import open_store, parse_store_url
from ._client import explain
from ._types import FlowInput, FlowInputError

logger = logging.getLogger("asteps.swf.worker")


@dataclass
class FlowReport:
    """How one attempt at a workflow went."""

    workflow_id: str
    run_id: str
    ok: bool
    steps: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    retryable: bool = True
    duration: float = 0.0
    outcome: str = "completed"
    """What became of the SWF task: ``completed``, ``failed``, ``canceled`` (SWF
    asked), ``stopped`` (the worker stopped first) or ``dropped`` (SWF no longer
    knew the task: timed out, or run by another worker)."""

    def result(self) -> str:
        """The activity's result, which becomes the execution's: the summary."""
        return json.dumps(
            {
                "workflow_id": self.workflow_id,
                "run_id": self.run_id,
                "steps": dict(self.steps),
                "duration": round(self.duration, 3),
            }
        )


def accept(task: Mapping[str, Any], flow_spec: str, flow: Flow) -> FlowInput:
    """The task's input, checked against the worker's flow.

    Raises :class:`FlowInputError`, :class:`~asteps.errors.FlowError`,
    :class:`~asteps.errors.InvalidStepName` or
    :class:`~asteps.errors.StoreError` (a malformed store URL): input that no
    retry would make runnable.
    """
    spec = FlowInput.from_json(task.get("input"))
    if spec.flow != flow_spec:
        # A worker runs the one flow it was started with: the input must not
        # make it import code of the submitter's choosing.
        raise FlowInputError(
            f"this worker runs flow {flow_spec!r}, the execution asks for {spec.flow!r}: "
            "give each flow its own --task-list, with workers started for that flow"
        )
    workflow_id = task["workflowExecution"]["workflowId"]
    validate_workflow_id(workflow_id)
    check_params(flow, spec.params)
    validate_patterns([*spec.force, *spec.skip])
    check_prefix_per_workflow(spec.prefix)  # a worker runs many workflows
    format_prefix(spec.prefix, workflow_id, None)
    if spec.store is not None:
        parse_store_url(spec.store)
    return spec


async def run_flow(
    flow: Flow, store: DoneStore, spec: FlowInput, workflow_id: str, run_id: str, bus: EventBus
) -> FlowReport:
    """Run the flow for one workflow; a failure is reported, not raised.

    The workflow fails when the flow raises or one of its steps failed, as in
    ``asteps run`` and ``rerun``.
    """
    batch = BatchRun(
        flow,
        store,
        force=spec.force,
        skip=spec.skip,
        reason=spec.reason,
        params=spec.params,
        prefix=spec.prefix,
    )
    report = await batch.run_one(workflow_id, run_id=run_id, bus=bus)
    return FlowReport(
        workflow_id,
        run_id,
        ok=report.ok,
        steps=report.steps,
        error=report.error,
        duration=report.duration,
        outcome="completed" if report.ok else "failed",
    )


class Stores:
    """The stores a worker's flows use, each opened once, on first use, and
    closed with the worker's exit stack."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self._stack = stack
        self._open: dict[str, DoneStore] = {}
        self._opening = anyio.Lock()

    async def get(self, url: str) -> DoneStore:
        """The open store ``url`` names."""
        async with self._opening:
            if url not in self._open:
                self._open[url] = await self._stack.enter_async_context(open_store(url))
            return self._open[url]


class Heartbeat:
    """Records a heartbeat now, then every ``period`` seconds, until cancelled.

    When SWF answers ``cancelRequested``, or no longer knows the task (it timed
    out, or the execution closed), :meth:`run` cancels ``scope`` (the flow's)
    and says which in :attr:`cancel_requested` or :attr:`lost`.
    """

    def __init__(self, client: Any, token: str, period: float, workflow_id: str) -> None:
        self.client = client
        self.token = token
        self.period = period
        self.workflow_id = workflow_id
        self.cancel_requested = False
        self.lost = False

    async def run(self, scope: anyio.CancelScope) -> None:
        while True:
            try:
                answer = await self.client.record_activity_task_heartbeat(taskToken=self.token)
            except ClientError as exc:
                if _code(exc) == "UnknownResourceFault":
                    logger.warning(
                        "workflow %s: SWF no longer knows this attempt (%s); stopping it",
                        self.workflow_id,
                        explain(exc),
                    )
                    self.lost = True
                    scope.cancel()
                    return
                logger.warning("workflow %s: heartbeat failed: %s", self.workflow_id, explain(exc))
            except BotoCoreError as exc:
                logger.warning("workflow %s: heartbeat failed: %s", self.workflow_id, explain(exc))
            else:
                if answer.get("cancelRequested"):
                    logger.warning("workflow %s: SWF asked to cancel it", self.workflow_id)
                    self.cancel_requested = True
                    scope.cancel()
                    return
            await anyio.sleep(self.period)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
