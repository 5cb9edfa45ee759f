"""Batch reruns: one flow over many workflows, streamed, bounded, interruptible.

:class:`BatchRun` is a pipeline (``asteps._pipeline``: N listers, N
workers, a bounded channel between them) whose preparation lists a
workflow's done set and whose work is :func:`~asteps._workflow.run_workflow`.
The store's own request limit (``S3Store(max_concurrency=...)``) is shared by
the listings, marker writes and body reads of the whole batch.

Memory is flat in the number of ids: the batch remembers the ids in flight
(to never run one twice at once), counts, and the first ``KEPT_FAILURES``
failures; each failed id goes to ``on_workflow`` as it fails (the CLI
streams them to the retry file).

Stopping (Ctrl-C in the CLI) stops reading ids, cancels the workflows in
flight (cancellation never marks a step done) and reports every id read that
did not finish: in flight, listed but not started, and read ahead into the
reader's buffer. The ids not yet read are not read: a stop costs time and
memory in proportion to the work in flight, never to the ids left. The
summary says where reading stopped instead (``stopped_at``; ``next_line``
for a file, ``listed_to`` for the store's listing), which a resume point
records (``asteps._resume``). A store that fails (a listing after its
retries, or a marker that cannot be written), ids that cannot be read (an
I/O error, an iterator that raises), or an ``on_workflow`` callback that
raises stop the batch the same way: ``run`` always returns its summary, and
``aborted`` names the workflow whose report failed (counted as finished: it
ran, only its report was not taken).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._bus import EventBus
from ._claims import DEFAULT_LEASE, check_lease
from ._flows import Flow
from ._ids import (  # importable from here too, as they were
    MAX_LINE_BYTES,
    BadId,
    DiscoveredIds,
    IdReader,
    IdSource,
    IterableIds,
    numbered_ids,
    read_ids,
    stream_chunks,
)
from ._names import (
    DEFAULT_PREFIX,
    check_prefix_per_workflow,
    covers,
    format_prefix,
    validate_patterns,
)
from ._pipeline import Pipeline
from ._runner import Runner
from ._shards import Shard
from ._telemetry import batch_span
from ._workflow import NOT_DONE, WorkflowReport, run_reason, run_workflow, workflow_runner
from .errors import ClaimsNotSupported, InvalidName, describe
from .stores.base import DoneStore, HoldsClaims

__all__ = [
    "MAX_LINE_BYTES",
    "NOT_DONE",
    "BadId",
    "BatchRun",
    "BatchSummary",
    "IdReader",
    "IterableIds",
    "WorkflowReport",
    "numbered_ids",
    "read_ids",
    "run_reason",
    "stream_chunks",
]

MAX_REASONS = 20
"""Reasons a batch's summary tells apart; the others count as ``OTHER_REASONS``."""
OTHER_REASONS = "other reasons"
KEPT_FAILURES = 1000
"""Failed workflows whose ids and reasons a summary keeps; the others are counted."""
_MAX_REASON_CHARS = 120  # a reason may quote a marker's body (a version)


@dataclass
class BatchSummary:
    """Totals of a batch, updated as workflows finish."""

    succeeded: int = 0
    failed: int = 0
    """Workflows that failed (their ids go to ``on_workflow`` as they fail)."""
    failed_ids: list[str] = field(default_factory=list)
    """The first ``KEPT_FAILURES`` failed ids, with their reasons in ``errors``."""
    unfinished_ids: list[str] = field(default_factory=list)
    steps: Counter[str] = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    interrupted: bool = False
    aborted: str | None = None
    """Why the batch stopped early on its own (the store failed), if it did."""
    unreadable: str | None = None
    """Why the batch stopped early because its ids could not be read on (an
    I/O error of the ids file, an iterator that raised), if it did."""
    repeated: int = 0
    """Ids passed over because the same id was in flight: an id never runs
    twice at once (one that comes again after its run finished runs again)."""
    passed_over: int = 0
    """Workflows listed but not run: their done set did not match ``missing``
    or ``only_with_markers``."""
    stopped_at: str | None = None
    """After a stop: where reading the ids stopped, in words (``line 1,235``,
    ``after workflow 'w0042' of the store's listing``); None when every id
    was read. The ids from there on are in neither list: go on from there."""
    next_line: int | None = None
    """After a stop of a batch over an ids file (an :class:`IdReader`): the
    line to go on from (1-based); the ids of the lines before it that did not
    finish are in ``unfinished_ids``."""
    listed_to: str | None = None
    """After a stop of a batch over the store's listing: the last workflow
    listed, to go on after (S3's ``StartAfter``)."""
    run_reasons: Counter[str] = field(default_factory=Counter)
    """Why the steps that ran (or would run, in a dry run) did: how many
    steps for each reason (their decision's reasons joined by ``"; "``:
    ``"result missing"``, ``"version 1 -> 2"``, ``"forced by export"``;
    ``"not done"`` when the step had never completed). At most
    ``MAX_REASONS`` are told apart, the rest counted as ``"other reasons"``."""
    shard: str | None = None
    """The shard that ran (``"0/4"``), when the batch ran one shard of its ids."""
    other_shards: int = 0
    """Ids read and left to the other shards (not run, not in any list)."""

    @property
    def stopped(self) -> bool:
        """Whether the batch stopped before its ids were over (see ``stopped_at``)."""
        return self.interrupted or self.aborted is not None or self.unreadable is not None

    @property
    def finished(self) -> int:
        """Workflows that ran to the end, successfully or not."""
        return self.succeeded + self.failed

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able data (the CLI's ``--json``)."""
        return {
            "workflows": {
                "finished": self.finished,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "unfinished": len(self.unfinished_ids),
            },
            "passed_over": self.passed_over,
            "repeated": self.repeated,
            "shard": self.shard,
            "other_shards": self.other_shards,
            "steps": dict(self.steps),
            "run_reasons": dict(self.run_reasons.most_common()),
            "elapsed": round(self.elapsed, 3),
            "interrupted": self.interrupted,
            "aborted": self.aborted,
            "unreadable": self.unreadable,
            "stopped_at": self.stopped_at,
            "next_line": self.next_line,
            "listed_to": self.listed_to,
            "failed_ids": self.failed_ids,
            "unfinished_ids": self.unfinished_ids,
            "errors": self.errors,
        }


class BatchRun:
    """Run ``flow`` for many workflow ids, ``concurrency`` at a time.

    ``missing`` (patterns) keeps only the workflows where some pattern covers
    none of the done steps (``missing=["export.csv"]``: those whose CSV export
    never completed); ``only_with_markers`` keeps only those with at least one
    done step. Both are decided on the workflow's listing, which the run uses
    anyway; the others are counted in ``summary.passed_over`` and not run.

    ``exclusive`` and ``lease`` go to every workflow's :class:`Runner`: with
    ``exclusive=True`` each step is claimed in the store before it runs, so
    that two batches (or a batch and a service) over the same ids never run
    a step at the same time. A store that cannot hold claims raises
    :class:`~asteps.errors.ClaimsNotSupported` here, before any workflow.

    ``shard`` keeps only the ids of that shard (see ``asteps._shards``),
    before anything is listed; the others are counted in
    ``summary.other_shards``.
    """

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
        version: str | None = None,
        missing: Sequence[str] = (),
        only_with_markers: bool = False,
        on_workflow: Callable[[WorkflowReport, BatchSummary], None] | None = None,
        exclusive: bool = False,
        lease: float = DEFAULT_LEASE,
        shard: Shard | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.exclusive = bool(exclusive)
        self.lease = check_lease(lease)
        if self.exclusive and not dry_run and not _holds_claims(store):
            # Once, here: not as many times as there are workflows.
            raise ClaimsNotSupported(
                f"{store!r} cannot hold claims, which exclusive steps need: use "
                "MemoryStore, FileStore or S3Store, or run without exclusive"
            )
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
        self.version = version
        self.missing = validate_patterns(missing)
        self.only_with_markers = only_with_markers
        self.on_workflow = on_workflow
        self.shard = shard
        format_prefix(prefix, "check", context)  # a bad template fails before any I/O

    async def run(
        self,
        ids: Iterable[str | BadId] | AsyncIterator[str] | IdSource,
        stop: anyio.Event | None = None,
    ) -> BatchSummary:
        """Run every id; an id is never run twice at once. Setting ``stop``
        interrupts cleanly.

        ``ids`` is an iterable, an :class:`IdReader` (a file or a pipe), an
        async iterator (``discover_workflows``), or any source of
        ``asteps._ids``. A :class:`BadId` fails as one workflow, with its
        reason, and the others run. The prefix template must give each
        workflow its own prefix (``{workflow_id}/``).
        """
        check_prefix_per_workflow(self.prefix, self.context)
        source: IdSource
        if isinstance(ids, IdSource):
            source = ids
        elif isinstance(ids, AsyncIterator):
            source = DiscoveredIds(ids)
        else:
            source = IterableIds(ids)
        summary = BatchSummary(shard=None if self.shard is None else str(self.shard))

        def repeat(wid: str) -> None:  # counted as it happens, for a progress bar
            summary.repeated += 1

        pipeline: Pipeline[Runner] = Pipeline(
            concurrency=self.concurrency,
            prepare=lambda wid: self._prepare(wid, summary, pipeline),
            work=lambda runner: self._work(runner, summary, pipeline),
            refuse=lambda wid, why: self._record(
                WorkflowReport(wid, ok=False, error=why), summary, pipeline
            ),
            repeat=repeat,
            shard=self.shard,
        )
        started = anyio.current_time()
        with batch_span():
            end = await pipeline.run(source, stop)
        summary.interrupted, summary.aborted, summary.unreadable = (
            end.interrupted,
            end.aborted,
            end.unreadable,
        )
        summary.other_shards = end.other_shards
        summary.unfinished_ids = end.unfinished
        summary.stopped_at, summary.next_line, summary.listed_to = (
            end.stopped_at,
            end.next_line,
            end.after,
        )
        summary.elapsed = anyio.current_time() - started
        return summary

    async def _prepare(
        self, wid: str, summary: BatchSummary, pipeline: Pipeline[Runner]
    ) -> Runner | None:
        """The runner of ``wid`` with its done set listed; None when the id is
        invalid (it fails at once) or the workflow is not selected."""
        try:
            runner = self._runner(wid)  # checks the id, formats its prefix, the store checks it
        except InvalidName as exc:
            self._record(WorkflowReport(wid, ok=False, error=str(exc)), summary, pipeline)
            return None
        try:
            done = await runner.steps_done()  # the runner keeps it; a store failure stops the batch
        except InvalidName as exc:  # a store of one's own may refuse the prefix only as it lists
            self._record(WorkflowReport(wid, ok=False, error=str(exc)), summary, pipeline)
            return None
        if not self._selected(done):
            summary.passed_over += 1
            return None
        return runner

    async def _work(
        self, runner: Runner, summary: BatchSummary, pipeline: Pipeline[Runner]
    ) -> bool:
        report = await run_workflow(self.flow, runner, self.params)
        self._record(report, summary, pipeline)
        if (failure := report.store_error) is not None:
            pipeline.abort(str(failure))
        return True

    def _selected(self, done: frozenset[str]) -> bool:
        """Whether a workflow with this done set is run (``missing``, ``only_with_markers``)."""
        if self.only_with_markers and not done:
            return False
        if self.missing:
            return any(not any(covers(p, name) for name in done) for p in self.missing)
        return True

    async def run_one(
        self,
        workflow_id: str,
        done: frozenset[str] | None = None,
        *,
        run_id: str | None = None,
        bus: EventBus | None = None,
    ) -> WorkflowReport:
        """Run the flow for one workflow; its failure is reported, not raised.

        ``run_id`` and ``bus`` go to its runner (an SWF worker passes the
        execution's run id, and the bus its signal bridge reads).
        """
        runner = self._runner(workflow_id, done, run_id=run_id, bus=bus)
        return await run_workflow(self.flow, runner, self.params)

    def _runner(
        self,
        workflow_id: str,
        done: frozenset[str] | None = None,
        *,
        run_id: str | None = None,
        bus: EventBus | None = None,
    ) -> Runner:
        """The runner of one workflow, with the batch's patterns: it checks the
        id and formats the prefix (``InvalidName`` when either is bad, or the
        store refuses the prefix)."""
        return workflow_runner(
            self.store,
            workflow_id,
            force=self.force,
            skip=self.skip,
            reason=self.reason,
            run_id=run_id,
            version=self.version,
            bus=bus,
            prefix=self.prefix,
            context=self.context,
            dry_run=self.dry_run,
            done=done,
            exclusive=self.exclusive,
            lease=self.lease,
        )

    def _record(
        self, report: WorkflowReport, summary: BatchSummary, pipeline: Pipeline[Runner]
    ) -> None:
        """Count a finished workflow and report it to ``on_workflow``; a failure
        of that callback stops the batch, naming the workflow."""
        if report.ok:
            summary.succeeded += 1
        else:
            summary.failed += 1
            if len(summary.failed_ids) < KEPT_FAILURES:
                summary.failed_ids.append(report.workflow_id)
                summary.errors[report.workflow_id] = report.error or "failed"
        summary.steps.update(report.steps)
        for outcome in report.outcomes:
            if outcome.decision == "run":
                _count_reason(summary.run_reasons, run_reason(outcome))
        if self.on_workflow is not None:
            try:
                self.on_workflow(report, summary)
            except Exception as exc:
                pipeline.abort(f"reporting {report.workflow_id} failed: {describe(exc)}")


def _holds_claims(store: DoneStore) -> bool:
    """Whether ``store`` gives what exclusive steps need (as the runner checks)."""
    return isinstance(store, HoldsClaims)


def _count_reason(counter: Counter[str], reason: str) -> None:
    """Count ``reason``, within bounds: reasons may quote a marker's body, so
    the text is cut short and at most ``MAX_REASONS`` are told apart."""
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[:_MAX_REASON_CHARS] + "..."
    if reason not in counter and len(counter) - (OTHER_REASONS in counter) >= MAX_REASONS:
        reason = OTHER_REASONS
    counter[reason] += 1
