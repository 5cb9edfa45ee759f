"""One activity task: the flow for one workflow id, as ``asteps run`` runs it.

:func:`accept` checks a task's input before anything runs (what it refuses
can never succeed, so it is not retried) and picks its store among those the
operator allowed (:class:`StoreAllowList`); :func:`run_flow` runs the flow with
a :class:`Runner` whose ``run_id`` is the SWF run id; :class:`Heartbeat`
tells SWF the worker is alive and hears a cancellation request.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from .._bus import EventBus
from .._claims import DEFAULT_LEASE
from .._flows import Flow, check_params, flow_names
from .._names import format_prefix, shown, validate_workflow_id
from .._workflow import run_workflow, workflow_runner
from ..errors import StoreError
from ..stores.base import DoneStore
from ..stores.urls import open_store, parse_store_url
from ._client import UNKNOWN_RESOURCE, error_code, explain
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


class StoreAllowList:
    """The stores an execution's input may name: the worker's own, and those its
    operator allowed (``--allow-store``), compared after normalisation.

    The input only picks one of them: the worker opens the operator's URL, so
    no input ever sets an endpoint, a region, credentials or a local path, and
    the set of stores a worker opens is bounded by its command line.
    """

    def __init__(self, own: str, allowed: Sequence[str] = ()) -> None:
        self.own = own
        self._urls: dict[tuple[str, ...], str] = {}
        for url in (*allowed, own):  # malformed URLs fail here, before any I/O
            self._urls.setdefault(normalise_store_url(url), url)

    def resolve(self, asked: str | None) -> str:
        """The operator's URL for the store an input asks for (its own store for
        none); :class:`FlowInputError` for a store the operator did not allow."""
        if asked is None:
            return self.own
        try:
            found = self._urls.get(normalise_store_url(asked))
        except StoreError:
            found = None
        if found is None:
            raise FlowInputError(
                f"the execution asks for the store {shown(asked)}, which this worker's "
                "operator did not allow: start workers with --allow-store URL for it, "
                "or submit without --store"
            )
        return found


def normalise_store_url(url: str) -> tuple[str, ...]:
    """A store URL parsed, so that spellings of one store compare equal:
    ``file:store``, ``file:./store/`` and ``file:///abs/store`` (from the working
    directory ``/abs``), or S3 options in any order. Nothing is opened or
    resolved on disk."""
    parsed = parse_store_url(url)
    location = parsed.location
    if parsed.scheme == "file":
        location = os.path.abspath(location)
    options = (f"{k}={v}" for k, v in sorted(parsed.options.items()))
    return (parsed.scheme, location, parsed.key_root, *options)


def accept(
    task: Mapping[str, Any], flow: Flow, flows: frozenset[str], stores: StoreAllowList
) -> tuple[FlowInput, str]:
    """The task's input, checked against the worker's ``flow`` (its names in
    ``flows``, from :func:`~asteps._flows.flow_names`) and stores; and the URL
    of the store to open.

    Raises :class:`FlowInputError`, :class:`~asteps.errors.FlowError` or
    :class:`~asteps.errors.InvalidName`: input that no retry would make
    runnable.
    """
    spec = FlowInput.from_json(task.get("input"))
    # A worker runs the one flow it was started with: the input must not
    # make it import code of the submitter's choosing. Spellings of that
    # flow are compared by what they resolve to, without importing them.
    if not flow_names(spec.flow) & flows:
        raise FlowInputError(
            f"this worker runs another flow than {shown(spec.flow)} (it runs "
            f"{', '.join(sorted(flows))}): give each flow its own --task-list, with "
            "workers started for that flow"
        )
    workflow_id = task["workflowExecution"]["workflowId"]
    validate_workflow_id(workflow_id)
    check_params(flow, spec.params)
    format_prefix(spec.prefix, workflow_id, None)
    return spec, stores.resolve(spec.store)


async def run_flow(
    flow: Flow,
    store: DoneStore,
    spec: FlowInput,
    workflow_id: str,
    run_id: str,
    bus: EventBus,
    *,
    exclusive: bool = False,
    lease: float = DEFAULT_LEASE,
) -> FlowReport:
    """Run the flow for one workflow; a failure is reported, not raised.

    The workflow fails when the flow raises or one of its steps failed, as in
    ``asteps run`` and ``rerun``. ``exclusive`` and ``lease`` are the
    worker's (never the input's): with ``exclusive=True`` each step is claimed
    before it runs, so a slow attempt and the retry SWF gave another worker
    never run a step at the same time.
    """
    runner = workflow_runner(
        store,
        workflow_id,
        force=spec.force,
        skip=spec.skip,
        reason=spec.reason,
        run_id=run_id,
        bus=bus,
        prefix=spec.prefix,
        exclusive=exclusive,
        lease=lease,
    )
    report = await run_workflow(flow, runner, spec.params)
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

    Each heartbeat gets ``period`` seconds for its answer. One that has none by
    then (a request on a connection that hangs, which the client's read timeout,
    70 s for the worker's, would wait out while SWF times the attempt out after
    three periods) is abandoned with a warning, and the next one is sent at
    once: the period has passed already. So is an answer slower than a period
    (ten seconds by default), taken as none: SWF that slow is a connection in
    trouble, and two more heartbeats can still reach it before the timeout.

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
            answer: dict[str, Any] = {}
            with anyio.move_on_after(self.period) as call:
                try:
                    answer = await self.client.record_activity_task_heartbeat(taskToken=self.token)
                except ClientError as exc:
                    if error_code(exc) in UNKNOWN_RESOURCE:
                        logger.warning(
                            "workflow %s: SWF no longer knows this attempt (%s); stopping it",
                            self.workflow_id,
                            explain(exc),
                        )
                        self.lost = True
                        scope.cancel()
                        return
                    logger.warning(
                        "workflow %s: heartbeat failed: %s", self.workflow_id, explain(exc)
                    )
                except BotoCoreError as exc:
                    logger.warning(
                        "workflow %s: heartbeat failed: %s", self.workflow_id, explain(exc)
                    )
            if call.cancelled_caught:
                logger.warning(
                    "workflow %s: heartbeat got no answer within %g s; trying again",
                    self.workflow_id,
                    self.period,
                )
                continue
            if answer.get("cancelRequested"):
                logger.warning("workflow %s: SWF asked to cancel it", self.workflow_id)
                self.cancel_requested = True
                scope.cancel()
                return
            await anyio.sleep(self.period)
