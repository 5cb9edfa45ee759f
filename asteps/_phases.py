"""The phases of a step once decided, and the ``log.step`` markers they leave.

An exclusive step decided ``run`` first takes its claim
(:meth:`Phases._claim`); another runner may play the step meanwhile, and
then that runner's marker decides, as a done step's does (its kept result,
its version): a skip, or a run after all. A step that runs goes through, in
one coroutine (:meth:`Phases._execute`): the cancellation checkpoint, the
marker ``scheduled``, the activities (attempted again as its retry says;
under its claim, renewed), a second cancellation checkpoint, the done marker
(with the kept result, in the same write), the marker ``completed``. The
runner releases the claim once the step ended, however. A failure at any phase
is a marker ``failed`` and a failed outcome (:meth:`Phases._failed`); work
done but not marked is raised as :class:`MarkDoneError` or
:class:`ResultNotKept`, its result in hand.

Markers are kept as tuples and turned into dicts only when read
(:attr:`Runner.markers <asteps.Runner.markers>`); ``log.step`` is published
only when someone listens on the bus.

:class:`Phases` is the part of :class:`~asteps.Runner` that runs a decided
step: the runner is built on it, and its state is the runner's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any

import anyio
import anyio.lowlevel

from . import _telemetry
from ._bus import EventBus
from ._canvas import Activity, close_unawaited, start_activity
from ._claims import Claims, Held
from ._decision import JOINED, Decision, played_by
from ._options import Asked
from ._results import KeptResult, result_body
from ._retries import Attempts, Retry
from ._step import Status, StepOutcome
from ._telemetry import StepSpan
from ._turns import Turns
from .errors import (
    ClaimLost,
    MarkDoneError,
    MarkerBodyError,
    ResultNotKept,
    describe,
)
from .stores.base import DoneStore

logger = logging.getLogger("asteps")

Entry = tuple[str, str, Decision, BaseException | None, Mapping[str, Any] | None]
"""A ``log.step`` marker as recorded: step, status, decision, error, more details."""


class Phases:
    """How a runner runs a decided step, and records each phase."""

    workflow_id: str
    run_id: str
    prefix: str
    bus: EventBus
    max_result_bytes: int
    outcomes: list[StepOutcome]
    _log: list[Entry]
    _body: Mapping[str, Any]
    _turns: Turns

    async def _claim(
        self, name: str, decision: Decision, kept: KeptResult, asked: Asked, claims: Claims
    ) -> tuple[Decision, KeptResult, Held | None]:
        """Claim an exclusive step decided ``run``: the claim :class:`Held`, or,
        when another runner played the step while this one waited, the
        decision its marker makes, as a done step's does (kept result,
        version): a skip, or a run after all, claimed again, forced."""
        await anyio.lowlevel.checkpoint_if_cancelled()  # the claim is a side effect
        forced = decision.forced
        while True:
            problem = None
            try:
                taken = await claims.take(self.prefix, name, forced=forced)
            except MarkerBodyError as exc:  # played elsewhere, its marker's body broken
                taken, problem = {}, str(exc)
            if isinstance(taken, Held):
                return decision, kept, taken
            played = played_by(taken.get("run_id"))
            marker = None if problem is not None else taken
            decision, kept = self._turns.reconsider(played, marker, asked, problem)
            if not decision.run or fails_missing(kept, asked):
                if self._turns.done is not None:
                    self._turns.done.add(name)
                return decision, kept, None
            forced = True

    async def _execute(
        self,
        name: str,
        decision: Decision,
        activities: Activity,
        asked: Asked,
        store: DoneStore,
        held: Held | None,
        attempts: Attempts | None,
        started: float,
        span: StepSpan | None,
    ) -> StepOutcome:
        """The phases of a step that runs, in order: marker ``scheduled``, the
        activities (attempted again as ``attempts`` says, if given; under the
        claim ``held``, renewed, for an exclusive step), mark done, marker
        ``completed``. The caller releases the claim."""
        keep, bubbles = asked.keep, asked.bubbles
        ran = False
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # before the first side effect
            if (details := self._record(name, "scheduled", decision)) is not None:
                await self.bus.publish("log.step", details)
            ran = True
            try:
                if held is None:
                    result = await _start(activities, attempts)
                else:
                    result = await _run_holding(held, activities, attempts)
            except Exception as exc:
                close_unawaited(activities)  # what did not run never will
                tries = 1 if attempts is None else attempts.count
                return await self._failed(name, decision, exc, started, bubbles, span, tries)
            tries = 1 if attempts is None else attempts.count
            try:
                body: Mapping[str, Any] = self._body
                if keep:  # the result goes in the same single write as the marker
                    try:
                        body = result_body(body, result, keep, self.max_result_bytes)
                    except ValueError as exc:
                        raise ResultNotKept(name, result, str(exc)) from exc
                if held is not None:
                    await held.check()  # never a marker after the lease could expire
                # Never a marker for a step cancelled while its activities ran:
                # they may return without awaiting again (a shielded section).
                await anyio.lowlevel.checkpoint_if_cancelled()
                try:
                    await store.mark_done(self.prefix, name, body)
                except Exception as exc:
                    raise MarkDoneError(name, result, prefix=self.prefix, cause=exc) from exc
            except ClaimLost as exc:
                return await self._failed(name, decision, exc, started, bubbles, span, tries)
            except (MarkDoneError, ResultNotKept) as exc:
                # The work is done but not marked: raised, with the result in hand.
                if (details := self._record(name, "failed", decision, exc)) is not None:
                    await self.bus.publish("log.step", details)
                logger.error(
                    "%s: %s",
                    self.workflow_id,
                    exc,
                    extra={"workflow_id": self.workflow_id, "step": name, "status": "failed"},
                )
                outcome = make_outcome(name, "failed", decision, started, result, exc, tries)
                self._put_on_record(outcome, span)  # raised, not returned: on record all the same
                raise
            if self._turns.done is not None:
                self._turns.done.add(name)
            more = {"attempts": tries} if tries > 1 else None
            if (details := self._record(name, "completed", decision, None, more)) is not None:
                await self.bus.publish("log.step", details)
            return make_outcome(name, "completed", decision, started, result, None, tries)
        finally:
            if not ran:
                close_unawaited(activities)

    async def _joined(
        self, name: str, first: StepOutcome, emit: bool, span: StepSpan | None
    ) -> StepOutcome:
        """Skipped: a call of the same name in flight in this runner played it."""
        if (details := self._record(name, "skipped", JOINED)) is not None:
            await self.bus.publish("log.step", details)
        outcome = make_outcome(name, "skipped", JOINED, result=first.result)
        if emit:
            await self.bus.publish(f"step.{name}", self._signal_payload(outcome))
        self._put_on_record(outcome, span)
        return outcome

    async def _failed(
        self,
        name: str,
        decision: Decision,
        exc: Exception,
        started: float,
        bubbles: bool,
        span: StepSpan | None,
        attempts: int = 1,
    ) -> StepOutcome:
        """The step failed with ``exc``: marker ``failed``, a warning, and the
        outcome (raised instead with ``bubbles``)."""
        more = {"attempts": attempts} if attempts > 1 else None
        if (details := self._record(name, "failed", decision, exc, more)) is not None:
            await self.bus.publish("log.step", details)
        logger.warning(
            "%s: step %s failed: %s",
            self.workflow_id,
            name,
            describe(exc),
            extra={"workflow_id": self.workflow_id, "step": name, "status": "failed"},
        )
        outcome = make_outcome(name, "failed", decision, started, error=exc, attempts=attempts)
        if bubbles:
            self._put_on_record(outcome, span)  # raised, not returned: on record all the same
            raise exc
        return outcome

    def _attempts(
        self, name: str, decision: Decision, retry: Retry | None, time_limit: float | None
    ) -> Attempts:
        """The attempts of a step with a retry or a time limit; each failed
        attempt that is retried is a marker ``retrying`` and a span event."""

        async def retrying(attempt: int, exc: Exception, delay: float) -> None:
            _telemetry.attempt_failed(exc, attempt, delay)
            more = {"attempt": attempt, "delay": round(delay, 3)}
            if (details := self._record(name, "retrying", decision, exc, more)) is not None:
                await self.bus.publish("log.step", details)
            logger.info(
                "%s: step %s attempt %d failed (%s); next attempt in %.3g s",
                self.workflow_id,
                name,
                attempt,
                describe(exc),
                delay,
                extra={"workflow_id": self.workflow_id, "step": name, "status": "retrying"},
            )

        return Attempts(name, retry, time_limit, retrying)

    # -- outcomes, markers and signals ------------------------------------------------

    def _put_on_record(self, outcome: StepOutcome, span: StepSpan | None) -> None:
        """Put a step's outcome, returned or raised, on record, and on its span."""
        self.outcomes.append(outcome)
        if span is not None:
            span.finish(outcome)

    def _record(
        self,
        name: str,
        status: str,
        decision: Decision,
        error: BaseException | None = None,
        more: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Record a ``log.step`` marker (its dict is built only when read); the
        marker's details when someone listens on the bus, for the caller to publish.
        ``more`` adds to the details (a retried step's attempts)."""
        self._log.append((name, status, decision, error, more))
        if self.bus.listening("log.step"):
            return marker_details(name, status, decision, error, more)
        return None

    def _signal_payload(self, outcome: StepOutcome) -> dict[str, Any]:
        """What the signal ``step.<name>`` carries."""
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "step": outcome.name,
            "status": outcome.status,
            "forced": outcome.forced,
            "reasons": list(outcome.reasons),
        }


def _start(activities: Activity, attempts: Attempts | None) -> Awaitable[Any]:
    """The awaitable that runs ``activities``, through ``attempts`` if given (a
    plain function, like ``start_activity``: no frame of its own)."""
    return start_activity(activities) if attempts is None else attempts.run(activities)


async def _run_holding(held: Held, activities: Activity, attempts: Attempts | None) -> Any:
    """Run ``activities`` while ``held`` is renewed, across all their attempts;
    a lost claim cancels them."""
    scope = anyio.CancelScope()
    error: Exception | None = None
    result: Any = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(held.keep, scope)
        try:
            with scope:
                result = await _start(activities, attempts)
        except Exception as exc:
            error = exc
        tg.cancel_scope.cancel()
    if held.lost is not None:
        raise ClaimLost(held.name, held.lost)
    if error is not None:
        raise error
    return result


def marker_details(
    name: str,
    status: str,
    decision: Decision,
    error: BaseException | None,
    more: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``log.step`` marker's details."""
    shown: dict[str, Any] = {
        "step": name,
        "status": status,
        "forced": decision.forced,
        "reasons": list(decision.reasons),
    }
    if error is not None:
        shown["error"] = describe(error)
    if more:
        shown.update(more)
    return shown


def fails_missing(kept: KeptResult, asked: Asked) -> bool:
    """Whether a done step fails for its missing (or invalid) kept result:
    ``on_missing_result="error"``, whatever else was decided (a new version's
    rerun included), where the step was found done or played elsewhere."""
    return kept.problem is not None and asked.on_missing == "error"


def make_outcome(
    name: str,
    status: Status,
    decision: Decision,
    started: float | None = None,
    result: Any = None,
    error: BaseException | None = None,
    attempts: int = 1,
) -> StepOutcome:
    """A step's outcome: the decision's reasons and patterns, shared."""
    return StepOutcome(
        name,
        status,
        decision.forced,
        decision.reasons,
        result,
        error,
        decision.action,
        decision.patterns,
        0.0 if started is None else time.perf_counter() - started,
        attempts,
    )
