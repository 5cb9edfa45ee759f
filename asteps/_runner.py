"""Runner: decides each step, then runs its phases as a Chain.

The phases of a step are those of simpleflow's reference document:

- run:  marker ``scheduled`` -> activities -> mark done -> marker ``completed``
  (:data:`EXECUTED_STEP_PHASES`, one Chain for every step);
- skip: ``activities_if_step_already_done`` -> marker ``skipped``;
- then, with ``emit_signal``, the signal ``step.<name>``.

Why it works this way:

- Decisions follow submission order. Each step takes the runner's lock (anyio's
  Lock is FIFO and hands ownership to the next waiter), lists the store if
  nothing is listed yet, decides, and lets go before running anything. So the
  store is listed once per runner, a step's dependents are forced before any
  step decided after it, and a step that is cancelled or fails while listing
  only gives the lock to the next one, which lists again.
- Cancellation never marks a step done: a cancelled step never reaches its
  mark-done phase, including one whose sync activity's thread finished after
  the cancellation (``_canvas`` checks for it when the thread returns).
- Telemetry (``asteps.instrument()``) costs one look at ``_telemetry.active``
  per step while it is off. While on, the step runs in a span and its store is
  wrapped so that each store call is a span too: the store a step uses is
  passed down, never swapped on the runner.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Protocol, Unpack

import anyio
import anyio.lowlevel

from . import _telemetry
from ._bus import EventBus, Signal
from ._canvas import Chain, close_unawaited, run_activity, start_activity
from ._decision import Decision, decide, decide_with_body
from ._names import format_prefix, validate_name, validate_patterns, validate_workflow_id
from ._results import (
    DEFAULT_MAX_RESULT_BYTES,
    RESULT_KEY,
    KeptResult,
    check_keep,
    check_max_result_bytes,
    decode_result,
    encode_result,
)
from ._step import Activity, Marker, OnMissingResult, Status, Step, StepOptions, StepOutcome
from .errors import (
    AstepsError,
    MarkDoneError,
    MarkerBodyError,
    ResultMissing,
    ResultNotKept,
    describe,
)
from .stores.base import DoneStore, ReadsMarkers

logger = logging.getLogger("asteps")

DEFAULT_PREFIX = "{workflow_id}/steps/"


class Runner:
    """Runs the steps of one workflow against a :class:`DoneStore`.

    ``prefix`` is a template formatted with ``workflow_id`` and the keys of
    ``context`` (simpleflow's ``get_step_path_prefix``). With ``dry_run=True``
    decisions are made against the real done list but no activity runs and
    nothing is written or signalled. ``done``, when given, is used as the done
    list instead of listing the store (batch reruns list many at once).
    ``max_result_bytes`` bounds the JSON of a kept result (``keep_result``).
    """

    def __init__(
        self,
        store: DoneStore,
        workflow_id: str,
        *,
        run_id: str | None = None,
        version: str | None = None,
        bus: EventBus | None = None,
        prefix: str = DEFAULT_PREFIX,
        context: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        done: Iterable[str] | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self.workflow_id = validate_workflow_id(workflow_id)
        self.prefix = format_prefix(prefix, workflow_id, context)
        self.store = store
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex
        self.version = version
        self.bus = bus if bus is not None else EventBus()
        self.dry_run = dry_run
        self.max_result_bytes = check_max_result_bytes(max_result_bytes)
        self.outcomes: list[StepOutcome] = []
        """Every step's outcome, in the order the steps finished."""
        self.markers: list[Marker] = []
        """The ``log.step`` markers recorded so far, in order."""
        self._forced: dict[str, list[str]] = {}
        self._skipped: dict[str, list[str]] = {}
        self._done: set[str] | None = set(done) if done is not None else None
        self._deciding = anyio.Lock(fast_acquire=True)
        self._body = {"run_id": self.run_id, "workflow_id": workflow_id, "version": version}

    def __repr__(self) -> str:
        return f"Runner({self.store!r}, {self.workflow_id!r}, prefix={self.prefix!r})"

    # -- forced and skipped patterns ------------------------------------------

    def add_forced_steps(self, steps: str | Iterable[str], reason: str | None = None) -> None:
        """Force these patterns (``a`` forces ``a.b.c``; ``*`` forces all)."""
        _add(self._forced, validate_patterns(steps), reason)

    def add_skipped_steps(self, steps: str | Iterable[str], reason: str | None = None) -> None:
        """Skip these patterns; forcing takes precedence over skipping."""
        _add(self._skipped, validate_patterns(steps), reason)

    def get_forced_steps(self) -> list[str]:
        """The forced patterns, in the order they were added."""
        return list(self._forced)

    def get_skipped_steps(self) -> list[str]:
        """The skipped patterns, in the order they were added."""
        return list(self._skipped)

    # -- the done list ---------------------------------------------------------

    async def steps_done(self) -> frozenset[str]:
        """The steps done for this workflow, listed from the store once."""
        async with self._deciding:
            return frozenset(await self._listed(_telemetry.traced_store(self.store)))

    async def _listed(self, store: DoneStore) -> set[str]:
        """The done set; lists the store the first time. Call with the lock held."""
        if self._done is None:
            done = set(await store.list_done(self.prefix))
            logger.debug(
                "%s: %d steps done under %r",
                self.workflow_id,
                len(done),
                self.prefix,
                extra={"workflow_id": self.workflow_id},
            )
            self._done = done
        return self._done

    # -- submitting steps ------------------------------------------------------

    def step(
        self, name: str, activities: Activity, **options: Unpack[StepOptions]
    ) -> Coroutine[Any, Any, StepOutcome]:
        """Run ``activities`` as step ``name`` unless it is done (or skipped).

        Returns the :class:`StepOutcome`. A failure of the activities gives an
        outcome with status ``failed`` (raised instead when
        ``bubbles_exception_on_failure``); a marker that cannot be written
        raises :class:`MarkDoneError` carrying the step's result. A coroutine
        given as ``activities`` (or as the alternative) that will not run is
        closed.
        """
        # Not ``async def``: this hands back the step's own coroutine, traced or
        # not, so that the step costs no extra coroutine frame (measured: about
        # a tenth of an executed step's time in bench/overhead.py).
        telemetry = _telemetry.active
        if telemetry is None:
            return self._step(name, activities, options, self.store)
        # instrument() was called: the same step, in a span, on a traced store.
        return telemetry.step(
            self, name, lambda store: self._step(name, activities, options, store)
        )

    async def _step(
        self, name: str, activities: Activity, options: StepOptions, store: DoneStore
    ) -> StepOutcome:
        alternative = options.get("activities_if_step_already_done")
        keep = options.get("keep_result", False)
        kept = KeptResult()
        try:
            validate_name(name)
            deps = options.get("force_steps_if_executed")
            patterns = validate_patterns(deps) if deps else None
            check_keep(keep)
            on_missing = _check_on_missing(options.get("on_missing_result", "run"))
            rerun_on_new_version = options.get("rerun_on_new_version", False)
            body: _BodyCheck | None = None
            if keep or rerun_on_new_version:
                body = _BodyCheck(self, name, keep, on_missing, rerun_on_new_version, store)
            decision, kept = await self._decide(
                name, options.get("force", False), patterns, store, body
            )
        except BaseException:
            close_unawaited(activities, alternative)  # it will never run
            raise
        bubbles = options.get("bubbles_exception_on_failure", False)
        if self.dry_run:
            close_unawaited(activities, alternative)
            outcome = _outcome(name, "planned", decision)
        elif kept.problem is not None and on_missing == "error":
            close_unawaited(activities, alternative)
            missing = ResultMissing(f"step {name!r} is done but {kept.problem}")
            outcome = await self._failed(name, decision, missing, time.perf_counter(), bubbles)
        elif decision.run:
            close_unawaited(alternative)
            execution = _Execution(
                name,
                decision,
                activities,
                store,
                self.prefix,
                self._body,
                self._done,
                self._record,
                keep,
                self.max_result_bytes,
            )
            outcome = await self._execute(execution, bubbles)
        else:
            close_unawaited(activities)
            outcome = await self._skip(name, alternative, decision, bubbles, kept.value)
        if options.get("emit_signal", False) and outcome.status in ("completed", "skipped"):
            await self.bus.publish(f"step.{name}", self._signal_payload(outcome))
        self.outcomes.append(outcome)
        return outcome

    async def submit(self, step: Step) -> StepOutcome:
        """Run a :class:`Step` built beforehand."""
        return await self.step(step.name, step.activities, **step.options())

    async def wait_signal(self, name: str, timeout: float | None = None) -> Signal:
        """Wait for signal ``name`` on the runner's bus.

        A signal already published on the bus counts, as a signal already in an
        SWF workflow's history does. Raises :class:`SignalTimeout` on timeout.
        """
        return await self.bus.wait(name, timeout, include_past=True)

    async def _decide(
        self,
        name: str,
        force: bool,
        deps: list[str] | None,
        store: DoneStore,
        body: _BodyCheck | None,
    ) -> tuple[Decision, KeptResult]:
        kept = KeptResult()
        async with self._deciding:
            done = await self._listed(store)
            decision = decide(
                name, force=force, forced=self._forced, skipped=self._skipped, done=done
            )
            if body is not None and deps and body.needed(decision):
                # Its dependents must be forced before any step decided after
                # it: a step with dependents reads its marker's body under the lock.
                decision, kept = await body.check(decision)
            if decision.run and deps:
                self.add_forced_steps(deps, reason=f"Dep of {name}")
        if body is not None and not deps and body.needed(decision):
            # Done, and only its marker's body can tell whether that stands. With
            # no dependents to force, it is read outside the lock: many at once.
            decision, kept = await body.check(decision)
        if logger.isEnabledFor(logging.DEBUG):  # building the arguments costs too
            logger.debug(
                "%s: step %s: %s%s %s",
                self.workflow_id,
                name,
                decision.action,
                " (forced)" if decision.forced else "",
                list(decision.reasons),
                extra={"workflow_id": self.workflow_id, "step": name, "decision": decision.action},
            )
        return decision, kept

    async def _decide_with_body(
        self,
        name: str,
        decision: Decision,
        keep: object,
        on_missing: OnMissingResult,
        rerun_on_new_version: bool,
        store: DoneStore,
    ) -> tuple[Decision, KeptResult]:
        if not isinstance(store, ReadsMarkers):
            raise AstepsError(
                f"{store!r} cannot read marker bodies, which keep_result and "
                "rerun_on_new_version need: give it read_marker(prefix, name), or use "
                "MemoryStore, FileStore or S3Store"
            )
        try:
            body = await store.read_marker(self.prefix, name)
        except MarkerBodyError as exc:
            body, kept = None, KeptResult(problem=f"result invalid: {exc}")
        else:
            kept = decode_result(body, keep) if keep else KeptResult()
        decision = decide_with_body(
            decision,
            keeps_result=bool(keep),
            result_problem=kept.problem,
            stored_version=(body or {}).get("version"),
            version=self.version,
            rerun_on_new_version=rerun_on_new_version,
            on_missing_result=on_missing,
        )
        return decision, kept

    def _signal_payload(self, outcome: StepOutcome) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "step": outcome.name,
            "status": outcome.status,
            "forced": outcome.forced,
            "reasons": list(outcome.reasons),
        }

    # -- executing and skipping ---------------------------------------------------

    async def _execute(self, ex: _Execution, bubbles: bool) -> StepOutcome:
        started = time.perf_counter()
        try:
            await EXECUTED_STEP_PHASES.run(ex)
        except (MarkDoneError, ResultNotKept) as exc:
            # The work is done but not marked: raised, with the result in hand.
            await self._record(ex.name, "failed", ex.decision, error=exc)
            logger.error(
                "%s: %s",
                self.workflow_id,
                exc,
                extra={"workflow_id": self.workflow_id, "step": ex.name, "status": "failed"},
            )
            outcome = _outcome(ex.name, "failed", ex.decision, started, ex.result, exc)
            self.outcomes.append(outcome)  # raised, not returned: keep it on record
            raise
        except Exception as exc:
            return await self._failed(ex.name, ex.decision, exc, started, bubbles)
        finally:
            if not ex.ran:  # the phases stopped before the activities
                close_unawaited(ex.activities)
        return _outcome(ex.name, "completed", ex.decision, started, ex.result)

    async def _skip(
        self,
        name: str,
        alternative: Activity | None,
        decision: Decision,
        bubbles: bool,
        kept_result: Any,
    ) -> StepOutcome:
        started = time.perf_counter()
        result = kept_result
        try:
            if alternative is not None:
                alternative_result = await run_activity(alternative)
                if kept_result is None:  # a kept result is what the step returns
                    result = alternative_result
            await self._record(name, "skipped", decision)
        except Exception as exc:
            return await self._failed(name, decision, exc, started, bubbles)
        return _outcome(name, "skipped", decision, started, result)

    async def _failed(
        self, name: str, decision: Decision, exc: Exception, started: float, bubbles: bool
    ) -> StepOutcome:
        await self._record(name, "failed", decision, error=exc)
        logger.warning(
            "%s: step %s failed: %s",
            self.workflow_id,
            name,
            describe(exc),
            extra={"workflow_id": self.workflow_id, "step": name, "status": "failed"},
        )
        outcome = _outcome(name, "failed", decision, started, error=exc)
        if bubbles:
            self.outcomes.append(outcome)  # raised, not returned: keep it on record
            raise exc
        return outcome

    # -- markers -------------------------------------------------------------------

    async def _record(
        self, name: str, status: str, decision: Decision, error: Exception | None = None
    ) -> None:
        """Record a ``log.step`` marker, and publish it on the bus when someone listens."""
        details: dict[str, Any] = {
            "step": name,
            "status": status,
            "forced": decision.forced,
            "reasons": list(decision.reasons),
        }
        if error is not None:
            details["error"] = describe(error)
        self.markers.append(Marker("log.step", details))
        # Nobody can observe a signal that no one listens to; building the
        # signal for each phase would be work for nothing.
        if self.bus.listening("log.step"):
            await self.bus.publish("log.step", details)


class _BodyCheck:
    """How a done step that keeps its result (or reruns on a new version) is
    decided again from its marker's body."""

    __slots__ = ("keep", "name", "on_missing", "rerun_on_new_version", "runner", "store")

    def __init__(
        self,
        runner: Runner,
        name: str,
        keep: object,
        on_missing: OnMissingResult,
        rerun_on_new_version: bool,
        store: DoneStore,
    ) -> None:
        self.runner = runner
        self.name = name
        self.keep = keep
        self.on_missing = on_missing
        self.rerun_on_new_version = rerun_on_new_version
        self.store = store

    @staticmethod
    def needed(decision: Decision) -> bool:
        """Only a skip because the step is done (no pattern decided it)."""
        return not decision.run and not decision.forced

    async def check(self, decision: Decision) -> tuple[Decision, KeptResult]:
        return await self.runner._decide_with_body(
            self.name, decision, self.keep, self.on_missing, self.rerun_on_new_version, self.store
        )


class _Record(Protocol):
    async def __call__(
        self, name: str, status: str, decision: Decision, error: Exception | None = None
    ) -> None: ...


class _Execution:
    """One executed step as it goes through the phases: what they need to know
    of the runner (its store, prefix, marker body, done set and marker log),
    and what they find out (whether the activities ran, their result)."""

    __slots__ = (
        "activities",
        "body",
        "decision",
        "done",
        "keep_result",
        "max_result_bytes",
        "name",
        "prefix",
        "ran",
        "record",
        "result",
        "store",
    )

    def __init__(
        self,
        name: str,
        decision: Decision,
        activities: Activity,
        store: DoneStore,
        prefix: str,
        body: Mapping[str, Any],
        done: set[str] | None,
        record: _Record,
        keep_result: object,
        max_result_bytes: int,
    ) -> None:
        self.name = name
        self.decision = decision
        self.activities = activities
        self.store = store
        self.prefix = prefix
        self.body = body
        self.done = done
        self.record = record
        self.keep_result = keep_result
        self.max_result_bytes = max_result_bytes
        self.ran = False
        self.result: Any = None


# The phases of an executed step, in the reference document's order, as one
# Chain for the whole process: each phase takes the step's _Execution and
# hands it on (send_result=True).


async def _scheduled(ex: _Execution) -> _Execution:
    await ex.record(ex.name, "scheduled", ex.decision)
    return ex


async def _run_activities(ex: _Execution) -> _Execution:
    ex.ran = True
    ex.result = await start_activity(ex.activities)
    return ex


async def _mark_done(ex: _Execution) -> _Execution:
    body = ex.body
    if ex.keep_result:  # the result goes in the same single write as the marker
        try:
            value = encode_result(ex.result, ex.keep_result, ex.max_result_bytes)
        except ValueError as exc:
            raise ResultNotKept(ex.name, ex.result, str(exc)) from exc
        body = {**body, RESULT_KEY: value}
    try:
        await ex.store.mark_done(ex.prefix, ex.name, body)
    except Exception as exc:
        raise MarkDoneError(ex.name, ex.result, prefix=ex.prefix, cause=exc) from exc
    if ex.done is not None:
        ex.done.add(ex.name)
    return ex


async def _completed(ex: _Execution) -> _Execution:
    await ex.record(ex.name, "completed", ex.decision)
    return ex


EXECUTED_STEP_PHASES = Chain(_scheduled, _run_activities, _mark_done, _completed, send_result=True)
"""marker ``scheduled`` -> the activities -> mark done -> marker ``completed``."""


def _outcome(
    name: str,
    status: Status,
    decision: Decision,
    started: float | None = None,
    result: Any = None,
    error: Exception | None = None,
) -> StepOutcome:
    return StepOutcome(
        name=name,
        status=status,
        forced=decision.forced,
        reasons=list(decision.reasons),
        result=result,
        error=error,
        decision=decision.action,
        patterns=decision.patterns,
        duration=0.0 if started is None else time.perf_counter() - started,
    )


def _check_on_missing(value: object) -> OnMissingResult:
    if value not in ("run", "none", "error"):
        raise ValueError(f"on_missing_result must be 'run', 'none' or 'error', got {value!r}")
    return value


def _add(table: dict[str, list[str]], patterns: list[str], reason: str | None) -> None:
    for pattern in patterns:
        reasons = table.setdefault(pattern, [])
        if reason is not None and reason not in reasons:
            reasons.append(reason)
