"""Batch reruns: one flow over many workflows, streamed, bounded, interruptible.

The pipeline (why it looks like this):

    ids (streamed) -> lister: done sets of the next chunk, concurrently
                   -> bounded channel -> N workers, each running one workflow

Ids are read lazily, so 100,000 ids never make 100,000 tasks: there are N
workers and one lister, and at most a couple of chunks of ids in memory. The
lister fetches the done sets of the next ``concurrency`` workflows at once
(``list_done_many``) while the workers run the previous ones, and hands each
runner its done set, so no workflow waits on its own listing.

Stopping (Ctrl-C in the CLI) stops reading ids, cancels the workflows in
flight (cancellation never marks a step done) and reports every id that did
not finish: in flight, listed but not started, and not yet read.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._flows import Flow
from ._names import format_prefix, validate_patterns, validate_workflow_id
from ._runner import DEFAULT_PREFIX, Runner
from ._step import StepOutcome
from .errors import InvalidStepName, StoreError, describe
from .stores.base import DoneStore, list_done_many


@dataclass
class WorkflowReport:
    """How one workflow of a batch went."""

    workflow_id: str
    ok: bool
    steps: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    duration: float = 0.0
    outcomes: list[StepOutcome] = field(default_factory=list)
    exception: Exception | None = None


@dataclass
class BatchSummary:
    """Totals of a batch, updated as workflows finish."""

    succeeded: int = 0
    failed_ids: list[str] = field(default_factory=list)
    unfinished_ids: list[str] = field(default_factory=list)
    steps: Counter[str] = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    interrupted: bool = False
    aborted: str | None = None
    """Why the batch stopped early on its own (the store failed), if it did."""

    @property
    def finished(self) -> int:
        """Workflows that ran to the end, successfully or not."""
        return self.succeeded + len(self.failed_ids)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able data (the CLI's ``--json``)."""
        return {
            "workflows": {
                "finished": self.finished,
                "succeeded": self.succeeded,
                "failed": len(self.failed_ids),
                "unfinished": len(self.unfinished_ids),
            },
            "steps": dict(self.steps),
            "elapsed": round(self.elapsed, 3),
            "interrupted": self.interrupted,
            "aborted": self.aborted,
            "failed_ids": self.failed_ids,
            "unfinished_ids": self.unfinished_ids,
            "errors": self.errors,
        }


def read_ids(lines: Iterable[str]) -> Iterator[str]:
    """Workflow ids from lines: stripped, blank lines and ``#`` comments skipped."""
    for line in lines:
        wid = line.strip()
        if wid and not wid.startswith("#"):
            yield wid


class BatchRun:
    """Run ``flow`` for many workflow ids, ``concurrency`` at a time."""

    def __init__(
        self,
        flow: Flow,
        store: DoneStore,
        *,
        force: Sequence[str] = (),
        skip: Sequence[str] = (),
        reason: str | None = None,
        params: Mapping[str, Any] | None = None,
        concurrency: int = 32,
        prefix: str = DEFAULT_PREFIX,
        context: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        on_workflow: Callable[[WorkflowReport, BatchSummary], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.flow = flow
        self.store = store
        self.force = validate_patterns(force)
        self.skip = validate_patterns(skip)
        self.reason = reason
        self.params = dict(params or {})
        self.concurrency = concurrency
        self.prefix = prefix
        self.context = context
        self.dry_run = dry_run
        self.on_workflow = on_workflow
        format_prefix(prefix, "check", context)  # a bad template fails before any I/O

    async def run(self, ids: Iterable[str], stop: anyio.Event | None = None) -> BatchSummary:
        """Run every id (duplicates once). Setting ``stop`` interrupts cleanly."""
        summary = BatchSummary()
        started = time.perf_counter()
        source = iter(ids)
        pending: dict[str, None] = {}  # read, not finished; in reading order
        send, receive = anyio.create_memory_object_stream[tuple[str, frozenset[str]]](
            self.concurrency * 2
        )
        work = anyio.CancelScope()
        async with anyio.create_task_group() as outer:
            if stop is not None:

                async def watch() -> None:
                    await stop.wait()
                    summary.interrupted = True
                    work.cancel()

                outer.start_soon(watch)
            with work:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._list_ahead, source, send, pending, summary, work)
                    for _ in range(self.concurrency):
                        tg.start_soon(self._work, receive.clone(), pending, summary)
                    receive.close()
            outer.cancel_scope.cancel()
        if summary.interrupted or summary.aborted:
            rest = (w for w in source if w not in pending)
            summary.unfinished_ids = list(dict.fromkeys([*pending, *rest]))
        summary.elapsed = time.perf_counter() - started
        return summary

    async def _list_ahead(
        self,
        source: Iterator[str],
        send: MemoryObjectSendStream[tuple[str, frozenset[str]]],
        pending: dict[str, None],
        summary: BatchSummary,
        work: anyio.CancelScope,
    ) -> None:
        seen: set[str] = set()
        async with send:
            while True:
                chunk: dict[str, str] = {}  # prefix -> workflow id
                for wid in source:
                    if wid in seen:
                        continue
                    seen.add(wid)
                    try:
                        validate_workflow_id(wid)
                        chunk[format_prefix(self.prefix, wid, self.context)] = wid
                    except InvalidStepName as exc:
                        self._record(WorkflowReport(wid, ok=False, error=str(exc)), summary)
                        continue
                    pending[wid] = None
                    if len(chunk) == self.concurrency:
                        break
                if not chunk:
                    return
                try:
                    done = await list_done_many(self.store, chunk, concurrency=self.concurrency)
                except StoreError as exc:
                    # The store is gone (after its retries): stop the batch, but
                    # keep what it did and the ids left, so it can be resumed.
                    summary.aborted = str(exc)
                    work.cancel()
                    return
                for prefix, wid in chunk.items():
                    await send.send((wid, done[prefix]))

    async def _work(
        self,
        receive: MemoryObjectReceiveStream[tuple[str, frozenset[str]]],
        pending: dict[str, None],
        summary: BatchSummary,
    ) -> None:
        async with receive:
            async for wid, done in receive:
                report = await self.run_one(wid, done)
                del pending[wid]
                self._record(report, summary)

    async def run_one(self, workflow_id: str, done: frozenset[str] | None = None) -> WorkflowReport:
        """Run the flow for one workflow; its failure is reported, not raised."""
        started = time.perf_counter()
        runner = Runner(
            self.store,
            workflow_id,
            prefix=self.prefix,
            context=self.context,
            dry_run=self.dry_run,
            done=done,
        )
        if self.force:
            runner.add_forced_steps(self.force, reason=self.reason)
        if self.skip:
            runner.add_skipped_steps(self.skip, reason=self.reason)
        error: str | None = None
        exception: Exception | None = None
        try:
            await self.flow(runner, **self.params)
        except Exception as exc:
            error, exception = describe(exc), exc
        steps: Counter[str] = Counter(o.shown_status for o in runner.outcomes)
        failed = [o for o in runner.outcomes if o.status == "failed"]
        if failed:  # the step's name says more than the exception alone
            error = _first_error(failed)
        return WorkflowReport(
            workflow_id,
            ok=error is None,
            steps=steps,
            error=error,
            duration=time.perf_counter() - started,
            outcomes=runner.outcomes,
            exception=exception,
        )

    def _record(self, report: WorkflowReport, summary: BatchSummary) -> None:
        if report.ok:
            summary.succeeded += 1
        else:
            summary.failed_ids.append(report.workflow_id)
            summary.errors[report.workflow_id] = report.error or "failed"
        summary.steps.update(report.steps)
        if self.on_workflow is not None:
            self.on_workflow(report, summary)


def _first_error(failed: list[StepOutcome]) -> str:
    first = failed[0]
    detail = describe(first.error) if first.error else "failed"
    return f"step {first.name} failed: {detail}"
