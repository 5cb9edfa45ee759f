"""A worker for asteps executions on SWF: :class:`SwfWorker`.

One worker polls one task list for decision tasks and activity tasks at once
and runs up to ``concurrency`` flows; any number of workers, on any number of
machines, share a task list. SWF hands each task to one of them, times out
the activities of a worker that died (three missed heartbeats) and the
decider (:mod:`._decider`) schedules them again.

Why it works this way:

- Decisions never wait for a free slot: the decision poller is its own task,
  so a worker busy with flows still moves the executions on.
- An activity poll is made only with a slot free, so a task is never taken
  from SWF that this worker could not start at once.
- Empty polls back off (up to ``idle_wait`` seconds) unless the poll itself
  waited (real SWF holds a poll for up to 60 s; moto answers at once).
- Stopping (``stop`` set; SIGINT/SIGTERM in the CLI): polling stops, running
  flows get ``drain`` seconds to finish, then are cancelled (no step is
  marked by a cancellation) and handed back to SWF as a failure marked
  drained, which the decider retries at once without counting it: rolling
  deploys never use up an execution's attempts.
- Answers to SWF after a flow ran (completed, failed, canceled) are shielded
  from the worker's stop: the work is done, and SWF must hear it.
- Trust: whoever may start an execution must not control the worker. The
  input's flow must resolve to the worker's own; its store must be the
  worker's or one its operator allowed (``allow_stores``), and the worker
  opens the operator's URL; the retry policy is the execution's, recorded by
  ``submit``.
- What SWF no longer knows (a task completed twice, a timed-out task, a
  closed execution) is logged and dropped: another worker has it, or had it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from anyio.abc import TaskGroup
from botocore.exceptions import BotoCoreError, ClientError

from .._bus import EventBus
from .._claims import DEFAULT_LEASE, check_lease
from .._flows import flow_names, load_flow
from .._names import shown
from ..errors import (
    ClaimsNotSupported,
    FlowError,
    InvalidStepName,
    SignalError,
    StoreError,
    describe,
)
from ..stores.urls import default_store_url
from ._activity import FlowReport, Heartbeat, StoreAllowList, Stores, accept, run_flow
from ._client import SwfClientOptions, explain
from ._decider import decide
from ._types import (
    DEFAULT_TASK_LIST,
    DEFAULT_VERSION,
    SWF_REASON_LIMIT,
    FlowInput,
    FlowInputError,
    SwfError,
    SwfNotSetUp,
    clip,
    failure_details,
)
from .bridge import SwfSignalBridge

logger = logging.getLogger("asteps.swf.worker")

_LONG_POLL = 5.0
"""A poll that took this long waited on the server: no back-off after it."""
_FIRST_IDLE_WAIT = 0.05
_RESPOND_TIMEOUT = 15.0
"""How long a shielded answer to SWF may take while the worker stops."""


@dataclass
class WorkerStats:
    """What a worker did, counted as it goes."""

    decisions: int = 0
    flows: dict[str, int] = field(default_factory=dict)
    """Attempts by what became of them (see :attr:`FlowReport.outcome`)."""

    def count(self, report: FlowReport) -> None:
        self.flows[report.outcome] = self.flows.get(report.outcome, 0) + 1


class SwfWorker:
    """Run ``flow`` for the asteps executions of an SWF task list.

    ``flow`` is a flow spec (``package.module:function`` or
    ``file.py:function``), loaded now: a bad one raises
    :class:`~asteps.errors.FlowError` before any I/O. Each execution's input
    names its flow, which must resolve to this one. Flows run on ``store`` (a
    store URL; default ``$ASTEPS_STORE``, else ``file:.asteps``), or on one of
    ``allow_stores`` when the input names it; an input naming any other store
    fails at once.

    ``heartbeat`` seconds between heartbeats (SWF times an attempt out after
    three times that); each execution is retried by the policy in its own
    input (see :class:`~asteps.swf.RetryPolicy`); with ``signals``, each
    runner's ``step.<name>`` signals go to its own execution through an
    :class:`SwfSignalBridge`. ``on_workflow`` is called with each attempt's
    :class:`FlowReport` as it ends.

    With ``exclusive=True`` every step is claimed in the store for ``lease``
    seconds (renewed while it runs) before it runs: an attempt SWF timed out
    and gave to another worker, still running on a slow machine, and the
    retry never run a step at the same time; the second one to reach a step
    waits for the first and skips it once it is marked.

    Run it with ``await worker.run(stop)``; setting ``stop`` drains and returns.
    """

    def __init__(
        self,
        flow: str,
        *,
        domain: str,
        task_list: str = DEFAULT_TASK_LIST,
        concurrency: int = 8,
        heartbeat: float = 10.0,
        drain: float = 30.0,
        store: str | None = None,
        allow_stores: Sequence[str] = (),
        signals: bool = False,
        version: str = DEFAULT_VERSION,
        identity: str | None = None,
        session: aioboto3.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: AioConfig | None = None,
        on_workflow: Callable[[FlowReport], None] | None = None,
        idle_wait: float = 1.0,
        exclusive: bool = False,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if not domain:
            raise ValueError("domain is empty: give the SWF domain to work in")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if not (math.isfinite(drain) and drain >= 0):
            raise ValueError(f"drain must be a finite number of seconds, 0 or more, got {drain}")
        if not (math.isfinite(heartbeat) and heartbeat > 0):
            raise ValueError(
                f"heartbeat must be a finite number of seconds over 0, got {heartbeat}"
            )
        self.exclusive = bool(exclusive)
        self.lease = check_lease(lease)
        self.flow_spec = flow
        self.flow = load_flow(flow)
        self.flow_names = flow_names(flow, self.flow)
        self.store_url = store or default_store_url()
        # Malformed URLs fail here, before any I/O.
        self.stores = StoreAllowList(self.store_url, allow_stores)
        self.domain = domain
        self.task_list = task_list
        self.concurrency = concurrency
        self.heartbeat = heartbeat
        self.version = version
        self.drain = drain
        self.signals = signals
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.on_workflow = on_workflow
        self.idle_wait = idle_wait
        self.stats = WorkerStats()
        # Polls wait up to 60 s on real SWF: the read timeout must outlast
        # them; and every running flow may heartbeat at once.
        config = AioConfig(read_timeout=70, max_pool_connections=concurrency + 4)
        self._options = SwfClientOptions(
            session,
            endpoint_url,
            region_name,
            config.merge(client_config) if client_config else config,
        )
        self._slots = anyio.Semaphore(concurrency)
        self._running: dict[str, anyio.CancelScope] = {}
        self._none_running = anyio.Event()
        self._none_running.set()

    async def run(self, stop: anyio.Event | None = None) -> WorkerStats:
        """Poll and run until ``stop`` is set (forever without one), then drain."""
        stop = stop or anyio.Event()
        async with AsyncExitStack() as stack:
            client = await self._options.open(stack)
            await self._check(client)
            stores = Stores(stack)
            async with anyio.create_task_group() as running:
                async with anyio.create_task_group() as polling:
                    polling.start_soon(self._decisions, client)
                    polling.start_soon(self._activities, client, running, stores)
                    await stop.wait()
                    polling.cancel_scope.cancel()
                await self._drain()
        return self.stats

    async def _check(self, client: Any) -> None:
        """The domain must exist: a typo should stop the worker, not idle it."""
        try:
            await client.describe_domain(name=self.domain)
        except ClientError as exc:
            if "UnknownResource" in explain(exc):
                raise SwfNotSetUp(
                    f"SWF domain {self.domain!r} does not exist: create it with "
                    f"`asteps swf init --domain {self.domain}`, or check the region"
                ) from None
            raise SwfError(f"SWF domain {self.domain!r}: {explain(exc)}") from None
        except BotoCoreError as exc:
            raise SwfError(f"cannot reach SWF: {explain(exc)}; check the endpoint") from None

    async def _drain(self) -> None:
        with anyio.move_on_after(self.drain) as waiting:
            await self._none_running.wait()
        if waiting.cancelled_caught:
            logger.warning(
                "%d flow(s) still running after the %ss drain: cancelling them",
                len(self._running),
                self.drain,
            )
            for scope in self._running.values():
                scope.cancel()

    # -- decisions ---------------------------------------------------------------

    async def _decisions(self, client: Any) -> None:
        idle = _Backoff(self.idle_wait)
        while True:
            polled = time.monotonic()
            try:
                task = await self._poll_decision(client)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("polling for decision tasks failed: %s", explain(exc))
                await idle.empty(0.0)
                continue
            if task is None:
                await idle.empty(time.monotonic() - polled)
                continue
            idle.reset()
            await self._decide(client, task)

    async def _poll_decision(self, client: Any) -> dict[str, Any] | None:
        """A decision task with its whole history (every page), or None."""
        ask = {
            "domain": self.domain,
            "taskList": {"name": self.task_list},
            "identity": self.identity,
            "maximumPageSize": 1000,
        }
        page = await client.poll_for_decision_task(**ask)
        if not page.get("taskToken"):
            return None
        task = dict(page)
        events = list(page.get("events", []))
        while token := page.get("nextPageToken"):
            page = await client.poll_for_decision_task(**ask, nextPageToken=token)
            events.extend(page.get("events", []))
        task["events"] = events
        return task

    async def _decide(self, client: Any, task: dict[str, Any]) -> None:
        decisions = decide(task["events"], heartbeat=self.heartbeat, activity_version=self.version)
        workflow_id = task["workflowExecution"]["workflowId"]
        logger.debug(
            "workflow %s: %s", workflow_id, [d["decisionType"] for d in decisions] or "waiting"
        )
        if await _respond(
            client.respond_decision_task_completed,
            f"decision for {workflow_id}",
            taskToken=task["taskToken"],
            decisions=decisions,
        ):
            self.stats.decisions += 1

    # -- activities --------------------------------------------------------------

    async def _activities(self, client: Any, running: TaskGroup, stores: Stores) -> None:
        idle = _Backoff(self.idle_wait)
        while True:
            await self._slots.acquire()
            polled = time.monotonic()
            try:
                task = await client.poll_for_activity_task(
                    domain=self.domain, taskList={"name": self.task_list}, identity=self.identity
                )
            except (ClientError, BotoCoreError) as exc:
                self._slots.release()
                logger.warning("polling for activity tasks failed: %s", explain(exc))
                await idle.empty(0.0)
                continue
            except BaseException:
                self._slots.release()
                raise
            if not task.get("taskToken"):
                self._slots.release()
                await idle.empty(time.monotonic() - polled)
                continue
            idle.reset()
            scope = anyio.CancelScope()
            self._running[task["taskToken"]] = scope
            self._none_running = anyio.Event()
            running.start_soon(self._activity, client, task, stores, scope)

    async def _activity(
        self, client: Any, task: dict[str, Any], stores: Stores, scope: anyio.CancelScope
    ) -> None:
        try:
            with scope:
                self._report(await self._attempt(client, task, stores))
        except Exception:
            # A bug here must not stop the worker's other flows: SWF times
            # this attempt out and the decider retries it.
            logger.exception("workflow %s: the worker failed", task["workflowExecution"])
        finally:
            del self._running[task["taskToken"]]
            self._slots.release()
            if not self._running:
                self._none_running.set()

    def _report(self, report: FlowReport) -> None:
        self.stats.count(report)
        if self.on_workflow is not None:
            self.on_workflow(report)

    async def _attempt(self, client: Any, task: dict[str, Any], stores: Stores) -> FlowReport:
        """Run one activity task and answer SWF; how it went."""
        token = task["taskToken"]
        workflow_id = task["workflowExecution"]["workflowId"]
        run_id = task["workflowExecution"]["runId"]
        try:
            spec, store_url = accept(task, self.flow, self.flow_names, self.stores)
        except (FlowInputError, FlowError, InvalidStepName) as exc:
            logger.warning("workflow %s: input refused, not retried: %s", shown(workflow_id), exc)
            refused = FlowReport(workflow_id, run_id, ok=False, error=str(exc), retryable=False)
            with _shielded():
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
                    report = await self._run(stores, store_url, spec, workflow_id, run_id)
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
            with _shielded():
                await self._failed(client, token, stopped, drained=True)
            self._report(stopped)
            raise
        if report is None:  # SWF cancelled the attempt, or forgot it
            report = FlowReport(
                workflow_id, run_id, ok=False, duration=time.perf_counter() - started
            )
            if heartbeat.cancel_requested:
                report.outcome, report.error = "canceled", "cancelled at SWF's request"
                with _shielded():
                    await _respond(
                        client.respond_activity_task_canceled, workflow_id, taskToken=token
                    )
            else:
                report.outcome, report.error = "dropped", "SWF no longer knows this attempt"
            return report
        # The flow ran: SWF must hear how, even if the worker is stopping now.
        with _shielded():
            if report.ok:
                answered = await _respond(
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

    async def _run(
        self, stores: Stores, store_url: str, spec: FlowInput, workflow_id: str, run_id: str
    ) -> FlowReport:
        """The flow on its store, with a signal bridge when asked; a store or
        bridge that cannot be opened is a (retryable) failure."""
        bus = EventBus()
        bridge: Any = nullcontext()
        if self.signals:
            bridge = SwfSignalBridge(
                bus, domain=self.domain, executions=(workflow_id, run_id), **self._bridge_options()
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
        except ClaimsNotSupported as exc:  # no attempt can do better: not retried
            return FlowReport(workflow_id, run_id, ok=False, error=str(exc), retryable=False)
        except (StoreError, SignalError) as exc:
            if report is None:
                return FlowReport(workflow_id, run_id, ok=False, error=describe(exc))
            # The steps ran and are marked: an undelivered signal is said, not retried.
            logger.warning("workflow %s: %s", workflow_id, exc)
        assert report is not None
        return report

    def _bridge_options(self) -> dict[str, Any]:
        o = self._options
        return {
            "session": o.session,
            "endpoint_url": o.endpoint_url,
            "region_name": o.region_name,
            "client_config": o.config,
        }

    async def _failed(
        self, client: Any, token: str, report: FlowReport, *, drained: bool = False
    ) -> bool:
        error = report.error or "failed"
        return await _respond(
            client.respond_activity_task_failed,
            report.workflow_id,
            taskToken=token,
            reason=clip(error, SWF_REASON_LIMIT),
            details=failure_details(error, retryable=report.retryable, drained=drained),
        )


@contextmanager
def _shielded() -> Iterator[None]:
    """An answer to SWF that the worker's stop must not cut short, bounded in time."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(_RESPOND_TIMEOUT):
        yield


async def _respond(call: Callable[..., Any], what: str, **kwargs: Any) -> bool:
    """Answer SWF; False when it refused. A task SWF no longer knows (timed out,
    done by another worker, execution closed) is logged and dropped."""
    try:
        await call(**kwargs)
    except ClientError as exc:
        if "UnknownResource" in explain(exc):
            logger.info("%s: SWF no longer knows this task (%s): dropped", what, explain(exc))
        else:
            logger.warning("%s: SWF refused the answer: %s", what, explain(exc))
        return False
    except BotoCoreError as exc:
        logger.warning("%s: could not answer SWF: %s", what, explain(exc))
        return False
    return True


class _Backoff:
    """Waits after empty polls: 50 ms, doubling to ``most`` seconds; none after
    a poll that waited on the server (a long poll is a wait already)."""

    def __init__(self, most: float) -> None:
        self.most = most
        self._next = _FIRST_IDLE_WAIT

    def reset(self) -> None:
        self._next = _FIRST_IDLE_WAIT

    async def empty(self, took: float) -> None:
        if took >= _LONG_POLL:
            self.reset()
            return
        await anyio.sleep(min(self._next, self.most))
        self._next = min(self._next * 2, self.most)
