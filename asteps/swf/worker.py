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
  deploys do not use up an execution's attempts. ``stop_now`` (a second
  signal in the CLI) ends the drain early, with the same cancellation and
  hand-back: an operator who cannot wait need not kill the worker, which
  would leave its flows to time out and count. (An activity poll in
  flight is cancelled: a task SWF was handing it then times out and counts,
  the price of a prompt stop; see the guide.)
- A decision task the decider fails on is logged and left unanswered: SWF
  offers it again after the execution's decision timeout, and the worker
  goes on (a bug must not stop every flow it runs).
- Trust: whoever may start an execution must not control the worker. The
  input's flow must resolve to the worker's own; its store must be the
  worker's or one its operator allowed (``allow_stores``), and the worker
  opens the operator's URL; the retry policy is the execution's, recorded by
  ``submit``.

One attempt, from the task to SWF's answer, is :mod:`._attempt`'s; what the
decider decides is :mod:`._decider`'s.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from anyio.abc import TaskGroup
from botocore.exceptions import BotoCoreError, ClientError

from .._claims import DEFAULT_LEASE, check_lease
from .._flows import flow_names, load_flow
from ..stores.urls import default_store_url
from ._activity import FlowReport, StoreAllowList, Stores
from ._attempt import Attempts, respond
from ._client import SwfClientOptions, check_domain, explain
from ._decider import next_decisions
from ._types import DEFAULT_TASK_LIST, DEFAULT_VERSION

logger = logging.getLogger("asteps.swf.worker")

_LONG_POLL = 5.0
"""A poll that took this long waited on the server: no back-off after it."""
_FIRST_IDLE_WAIT = 0.05


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

    Run it with ``await worker.run(stop)``; setting ``stop`` drains and
    returns, and setting ``stop_now`` too (``run(stop, stop_now=...)``) ends
    the drain at once.
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
        self._attempts = Attempts(
            flow=self.flow,
            flow_names=self.flow_names,
            stores=self.stores,
            domain=domain,
            heartbeat=heartbeat,
            signals=signals,
            exclusive=self.exclusive,
            lease=self.lease,
            options=self._options,
            report=self._report,
        )
        self._slots = anyio.Semaphore(concurrency)
        self._running: dict[str, anyio.CancelScope] = {}
        self._none_running = anyio.Event()
        self._none_running.set()

    async def run(
        self, stop: anyio.Event | None = None, *, stop_now: anyio.Event | None = None
    ) -> WorkerStats:
        """Poll and run until ``stop`` is set (forever without one), then drain.

        The drain gives the running flows ``drain`` seconds to finish, then
        cancels those still running: no step of theirs is marked, and each is
        handed back to SWF, marked drained, for another worker, without using
        up an attempt. Setting ``stop_now`` ends the drain at once, with the
        same cancellation and hand-back (a second Ctrl-C to ``asteps swf
        worker``); set before the drain begins, it skips the wait, and set
        alone, without ``stop``, it stops the worker too: polling stops and
        the running flows are cancelled at once.
        """
        stop = stop or anyio.Event()
        stop_now = stop_now or anyio.Event()
        async with AsyncExitStack() as stack:
            client = await self._options.open(stack)
            # The domain must exist: a typo should stop the worker, not idle it.
            await check_domain(client, self.domain)
            stores = Stores(stack)
            async with anyio.create_task_group() as running:
                async with anyio.create_task_group() as polling:
                    polling.start_soon(self._decisions, client)
                    polling.start_soon(self._activities, client, running, stores)
                    await _either(stop, stop_now)
                    polling.cancel_scope.cancel()
                await self._drain(stop_now)
        return self.stats

    async def _drain(self, stop_now: anyio.Event) -> None:
        logger.info(
            "stopping: %d flow(s) running get up to %gs to finish", len(self._running), self.drain
        )
        with anyio.move_on_after(self.drain) as waiting:
            await _either(self._none_running, stop_now)
        if not self._running:  # all ended (with no drain, its time was up at once)
            return
        why = (
            f"after the {self.drain:g}s drain"
            if waiting.cancelled_caught
            else "when asked to stop at once"
        )
        logger.warning("%d flow(s) still running %s: cancelling them", len(self._running), why)
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
        workflow_id = task["workflowExecution"]["workflowId"]
        try:
            decisions = next_decisions(
                task["events"], heartbeat=self.heartbeat, activity_version=self.version
            )
        except Exception:
            # A bug, or a history no one foresaw, must not stop the worker and
            # every flow it runs: the task is left unanswered, and SWF offers it
            # again (to any worker) after the execution's decision timeout.
            logger.exception(
                "workflow %s: cannot decide its decision task; SWF offers it again after "
                "the execution's decision timeout",
                workflow_id,
            )
            return
        logger.debug(
            "workflow %s: %s", workflow_id, [d["decisionType"] for d in decisions] or "waiting"
        )
        if await respond(
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
                self._report(await self._attempts.run(client, task, stores))
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


async def _either(first: anyio.Event, second: anyio.Event) -> None:
    """Wait until ``first`` or ``second`` is set."""
    async with anyio.create_task_group() as waiting:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            waiting.cancel_scope.cancel()

        waiting.start_soon(wait, first)
        await wait(second)


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
