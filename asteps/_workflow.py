"""One workflow: :func:`run_workflow`, what ``asteps run``/``plan``, a batch and
an SWF activity all call, and the :class:`WorkflowReport` it gives.

A workflow's failure is reported, never raised: a batch goes on with the
others, the CLI prints it, the SWF activity fails the task with it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._concurrency import leaves
from ._flows import Flow
from ._runner import Runner
from ._step import StepOutcome
from ._telemetry import workflow_span
from .errors import StoreError, describe
from .stores.base import DoneStore

NOT_DONE = "not done"
"""The reason counted for a step that runs only because it never completed."""


@dataclass
class WorkflowReport:
    """How one workflow went."""

    workflow_id: str
    ok: bool
    steps: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    duration: float = 0.0
    outcomes: list[StepOutcome] = field(default_factory=list)
    exception: Exception | None = None

    @property
    def store_error(self) -> StoreError | None:
        """The store failure that failed this workflow (a marker not written), if any,
        also from inside an exception group (steps awaited in a Group or a Chain)."""
        raised = self.exception
        found = leaves(raised) if isinstance(raised, BaseExceptionGroup) else [raised]
        for exc in found:
            if isinstance(exc, StoreError):
                return exc
        for outcome in self.outcomes:  # the flow may have caught it and gone on
            if isinstance(outcome.error, StoreError):
                return outcome.error
        return None


def workflow_runner(
    store: DoneStore,
    workflow_id: str,
    *,
    force: Sequence[str] = (),
    skip: Sequence[str] = (),
    reason: str | None = None,
    **options: Any,
) -> Runner:
    """The runner of one workflow with its forced and skipped patterns;
    ``options`` go to :class:`Runner` (``InvalidName`` for a bad id or prefix,
    or one the store refuses)."""
    runner = Runner(store, workflow_id, **options)
    if force:
        runner.add_forced_steps(force, reason=reason)
    if skip:
        runner.add_skipped_steps(skip, reason=reason)
    return runner


async def run_workflow(
    flow: Flow, runner: Runner, params: Mapping[str, Any] | None = None
) -> WorkflowReport:
    """Run ``flow`` with ``runner`` and ``params``; its failure is reported, not raised."""
    started = time.perf_counter()
    workflow_id = runner.workflow_id
    error: str | None = None
    exception: Exception | None = None
    with workflow_span(workflow_id) as workflow:
        try:
            await flow(runner, **(params or {}))
        except Exception as exc:
            error, exception = describe(exc), exc
        steps: Counter[str] = Counter(o.shown_status for o in runner.outcomes)
        for outcome in runner.outcomes:
            if outcome.attempts > 1:  # steps that needed more than one attempt
                steps["retried"] += 1
                steps["attempts"] += outcome.attempts
        failed = [o for o in runner.outcomes if o.status == "failed"]
        if failed:  # the step's name says more than the exception alone
            error = _first_error(failed)
        workflow.ok = error is None
    return WorkflowReport(
        workflow_id,
        ok=error is None,
        steps=steps,
        error=error,
        duration=time.perf_counter() - started,
        outcomes=runner.outcomes,
        exception=exception,
    )


def run_reason(outcome: StepOutcome) -> str:
    """Why a step ran or would run, in one line, as a batch's summary counts it."""
    if outcome.reasons:
        return "; ".join(outcome.reasons)
    if outcome.forced:
        return "forced by " + ", ".join(outcome.patterns) if outcome.patterns else "forced"
    return NOT_DONE


def _first_error(failed: list[StepOutcome]) -> str:
    first = failed[0]
    detail = describe(first.error) if first.error else "failed"
    return f"step {first.name} failed: {detail}"
