"""Runner: decides each step, then runs its phases as a Chain.

The phases of a step are those of simpleflow's reference document:

- run:  marker ``scheduled`` -> activities -> mark done -> marker ``completed``
  (``EXECUTED_STEP_PHASES``, one Chain for every step);
- skip: ``activities_if_step_already_done`` -> marker ``skipped``
- then, with ``emit_signal``, the signal ``step.<name>``.

The done list is fetched from the store once per runner, by the first step
that needs it (concurrent steps wait for that one listing), then kept current
with the runner's own marks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from inspect import CO_COROUTINE
from typing import Any

import anyio
import anyio.lowlevel

from ._bus import EventBus, Signal
from ._canvas import Activity, Chain, run_activity
from ._decision import Decision, decide
from ._names import format_prefix, validate_name, validate_patterns, validate_workflow_id
from ._step import Marker, Status, Step, StepOutcome
from .errors import MarkDoneError, describe
from .stores.base import DoneStore

logger = logging.getLogger("asteps")

DEFAULT_PREFIX = "{workflow_id}/steps/"


class Runner:
    """Runs the steps of one workflow against a :class:`DoneStore`.

    ``prefix`` is a template formatted with ``workflow_id`` and the keys of
    ``context`` (simpleflow's ``get_step_path_prefix``). With ``dry_run=True``
    decisions are made against the real done list but no activity runs and
    nothing is written or signalled. ``done``, when given, is used as the done
    list instead of listing the store (batch reruns list many at once).
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
    ) -> None:
        self.workflow_id = validate_workflow_id(workflow_id)
        self.prefix = format_prefix(prefix, workflow_id, context)
        self.store = store
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex
        self.version = version
        self.bus = bus if bus is not None else EventBus()
        self.dry_run = dry_run
        self.outcomes: list[StepOutcome] = []
        """Every step's outcome, in the order the steps finished."""
        self._markers: list[Marker] = []
        self._marker_log: list[_MarkerRecord] = []
        self._forced: dict[str, list[str]] = {}
        self._skipped: dict[str, list[str]] = {}
        self._done: set[str] | None = set(done) if done is not None else None
        self._done_view: frozenset[str] | None = None
        self._listing: anyio.Event | None = None
        self._listing_error: BaseException | None = None
        self._waking = 0  # callers woken by the listing that have not decided yet
        self._body = {"run_id": self.run_id, "workflow_id": workflow_id, "version": version}

    def __repr__(self) -> str:
        return f"Runner({self.store!r}, {self.workflow_id!r}, prefix={self.prefix!r})"

    @property
    def markers(self) -> list[Marker]:
        """The ``log.step`` markers recorded so far, in order."""
        # Built on access: a Marker per phase on the hot path would cost an
        # allocation that nothing reads in most runs.
        built = self._markers
        for record in self._marker_log[len(built) :]:
            built.append(Marker("log.step", _details(record)))
        return built

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
        if self._done is None:
            await self._list_once()
        assert self._done is not None
        if self._done_view is None:
            self._done_view = frozenset(self._done)
        return self._done_view

    async def _list_once(self) -> None:
        if self._listing is not None:  # another caller is listing: wait for it
            self._waking += 1
            try:
                await self._listing.wait()
            finally:
                self._waking -= 1  # on resuming: this caller decides next
            if self._done is None:
                raise self._listing_error or RuntimeError("listing failed")
            return
        self._listing = event = anyio.Event()
        try:
            self._done = set(await self.store.list_done(self.prefix))
            logger.debug(
                "%s: %d steps done under %r", self.workflow_id, len(self._done), self.prefix
            )
        except BaseException as exc:
            self._listing_error = exc
            raise
        finally:
            event.set()
            if self._done is None:  # failed: the next caller lists again
                self._listing = None

    # -- submitting steps ------------------------------------------------------

    async def step(
        self,
        name: str,
        activities: Activity,
        *,
        force: bool = False,
        activities_if_step_already_done: Activity = None,
        emit_signal: bool = False,
        force_steps_if_executed: Iterable[str] | None = None,
        bubbles_exception_on_failure: bool = False,
    ) -> StepOutcome:
        """Run ``activities`` as step ``name`` unless it is done (or skipped).

        Returns the :class:`StepOutcome`. A failure of the activities gives an
        outcome with status ``failed`` (raised instead when
        ``bubbles_exception_on_failure``); a marker that cannot be written
        raises :class:`MarkDoneError` carrying the step's result.
        """
        if name not in _valid_names:
            _remember_valid(validate_name(name))
        deps = validate_patterns(force_steps_if_executed) if force_steps_if_executed else None
        if self._done is None:
            await self._list_once()
        while self._waking:
            # Steps submitted earlier are still waking up from the shared
            # listing (they are scheduled already): let them decide first.
            await anyio.lowlevel.checkpoint()
        # From here to the first await, nothing else runs: decisions are made
        # in submission order and a step's dependents are forced before any
        # step decided after it.
        decision = decide(
            name, force=force, forced=self._forced, skipped=self._skipped, done=self._done or ()
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: step %s: %s%s %s",
                self.workflow_id,
                name,
                decision.action,
                " (forced)" if decision.forced else "",
                list(decision.reasons),
            )
        if decision.run and deps:
            self.add_forced_steps(deps, reason=f"Dep of {name}")
        if self.dry_run:
            outcome = _outcome(name, "planned", decision, 0.0)
        elif decision.run:
            outcome = await self._execute(
                _Execution(self, name, decision, activities), bubbles_exception_on_failure
            )
        elif activities_if_step_already_done is None and not self._log_listened():
            # The common skip: nothing to run, nothing to await.
            self._log(name, "skipped", decision)
            outcome = _outcome(name, "skipped", decision, 0.0)
        else:
            outcome = await self._skip(
                name, activities_if_step_already_done, decision, bubbles_exception_on_failure
            )
        if emit_signal and outcome.status in ("completed", "skipped"):
            await self.bus.publish(
                f"step.{name}",
                {
                    "workflow_id": self.workflow_id,
                    "run_id": self.run_id,
                    "step": name,
                    "status": outcome.status,
                    "forced": decision.forced,
                    "reasons": list(decision.reasons),
                },
            )
        self.outcomes.append(outcome)
        return outcome

    async def submit(self, step: Step) -> StepOutcome:
        """Run a :class:`Step` built beforehand."""
        return await self.step(
            step.name,
            step.activities,
            force=step.force,
            activities_if_step_already_done=step.activities_if_step_already_done,
            emit_signal=step.emit_signal,
            force_steps_if_executed=step.force_steps_if_executed,
            bubbles_exception_on_failure=step.bubbles_exception_on_failure,
        )

    async def wait_signal(self, name: str, timeout: float | None = None) -> Signal:
        """Wait for signal ``name`` on the runner's bus.

        A signal already published on the bus counts, as a signal already in an
        SWF workflow's history does. Raises :class:`SignalTimeout` on timeout.
        """
        return await self.bus.wait(name, timeout, include_past=True)

    # -- executing and skipping ---------------------------------------------------

    async def _execute(self, ex: _Execution, bubbles: bool) -> StepOutcome:
        started = time.perf_counter()
        try:
            await EXECUTED_STEP_PHASES.run(ex)
        except MarkDoneError as exc:
            await self._record(ex.name, "failed", ex.decision, error=exc)
            logger.error("%s: %s", self.workflow_id, exc)
            outcome = _outcome(ex.name, "failed", ex.decision, 0.0, ex.result)
            outcome.error = exc
            self.outcomes.append(outcome)  # raised, not returned: keep it on record
            raise
        except Exception as exc:
            return await self._failed(ex.name, ex.decision, exc, started, bubbles)
        duration = time.perf_counter() - started
        return _outcome(ex.name, "completed", ex.decision, duration, ex.result)

    async def _skip(
        self, name: str, alternative: Activity, decision: Decision, bubbles: bool
    ) -> StepOutcome:
        started = time.perf_counter()
        result: Any = None
        try:
            if alternative is not None:
                result = await run_activity(alternative)
            await self._record(name, "skipped", decision)
        except Exception as exc:
            return await self._failed(name, decision, exc, started, bubbles)
        return _outcome(name, "skipped", decision, time.perf_counter() - started, result)

    async def _failed(
        self, name: str, decision: Decision, exc: Exception, started: float, bubbles: bool
    ) -> StepOutcome:
        await self._record(name, "failed", decision, error=exc)
        logger.warning("%s: step %s failed: %s", self.workflow_id, name, describe(exc))
        outcome = _outcome(name, "failed", decision, time.perf_counter() - started)
        outcome.error = exc
        if bubbles:
            self.outcomes.append(outcome)  # raised, not returned: keep it on record
            raise exc
        return outcome

    # -- markers -------------------------------------------------------------------

    def _log(
        self, name: str, status: str, decision: Decision, error: BaseException | None = None
    ) -> _MarkerRecord:
        # A flat tuple of strings and bools: the garbage collector stops
        # tracking it, which matters with thousands of steps in flight.
        text = None if error is None else describe(error)
        record = (name, status, decision.forced, decision.reasons, text)
        self._marker_log.append(record)
        return record

    def _log_listened(self) -> bool:
        return self.bus.listening("log.step")

    async def _record(
        self, name: str, status: str, decision: Decision, error: BaseException | None = None
    ) -> None:
        record = self._log(name, status, decision, error)
        # Markers go on the bus only when someone listens: nobody can observe
        # the difference, and it spares building a payload per phase.
        if self._log_listened():
            await self.bus.publish("log.step", _details(record))


_MarkerRecord = tuple[str, str, bool, tuple[str, ...], str | None]


def _details(record: _MarkerRecord) -> dict[str, Any]:
    name, status, forced, reasons, error = record
    details: dict[str, Any] = {
        "step": name,
        "status": status,
        "forced": forced,
        "reasons": list(reasons),
    }
    if error is not None:
        details["error"] = error
    return details


class _Execution:
    """The state of one executed step as it goes through the phases."""

    __slots__ = ("activities", "decision", "name", "result", "runner")

    def __init__(self, runner: Runner, name: str, decision: Decision, activities: Activity) -> None:
        self.runner = runner
        self.name = name
        self.decision = decision
        self.activities = activities
        self.result: Any = None


# The phases of an executed step, in the reference document's order, as one
# Chain for the whole process: each phase takes the step's _Execution and
# hands it on (send_result=True). Module-level functions rather than bound
# methods, so that a runner holds no reference cycle through its phases.


async def _scheduled(ex: _Execution) -> _Execution:
    await ex.runner._record(ex.name, "scheduled", ex.decision)
    return ex


async def _run_activities(ex: _Execution) -> _Execution:
    activities = ex.activities
    code = getattr(activities, "__code__", None)
    if code is not None and code.co_flags & CO_COROUTINE:  # fast path, one frame less
        ex.result = await activities()
    else:
        ex.result = await run_activity(activities)
    return ex


async def _mark_done(ex: _Execution) -> _Execution:
    runner = ex.runner
    try:
        await runner.store.mark_done(runner.prefix, ex.name, runner._body)
    except Exception as exc:
        raise MarkDoneError(ex.name, ex.result, prefix=runner.prefix, cause=exc) from exc
    if runner._done is not None:
        runner._done.add(ex.name)
        runner._done_view = None
    return ex


async def _completed(ex: _Execution) -> _Execution:
    await ex.runner._record(ex.name, "completed", ex.decision)
    return ex


EXECUTED_STEP_PHASES = Chain(_scheduled, _run_activities, _mark_done, _completed, send_result=True)
"""marker ``scheduled`` -> the activities -> mark done -> marker ``completed``."""


def _outcome(
    name: str, status: Status, decision: Decision, duration: float, result: Any = None
) -> StepOutcome:
    return _new_outcome(
        {
            "name": name,
            "status": status,
            "forced": decision.forced,
            "reasons": list(decision.reasons),
            "result": result,
            "error": None,
            "decision": decision.action,
            "patterns": decision.patterns,
            "duration": duration,
        }
    )


def _fast_outcomes() -> Callable[[dict[str, Any]], StepOutcome]:
    """A StepOutcome constructor for values the runner built and typed itself.

    It does what ``model_construct`` does, without its per-field loop, and
    shares one fields-set (every field is always set, so pydantic's
    ``fields_set.add`` on assignment never changes it): half the time of
    validation, and one tracked object less per step. It is checked once
    against the validating constructor; if pydantic's internals ever differ,
    validation is used instead.
    """
    fields_set = set(StepOutcome.model_fields)
    setattr_ = object.__setattr__

    def fast(values: dict[str, Any]) -> StepOutcome:
        outcome = StepOutcome.__new__(StepOutcome)
        setattr_(outcome, "__dict__", values)
        setattr_(outcome, "__pydantic_fields_set__", fields_set)
        setattr_(outcome, "__pydantic_extra__", None)
        setattr_(outcome, "__pydantic_private__", None)
        return outcome

    def validated(values: dict[str, Any]) -> StepOutcome:
        return StepOutcome(**values)

    sample = {
        "name": "a",
        "status": "failed",
        "forced": True,
        "reasons": ["r"],
        "result": {"x": 1},
        "error": None,
        "decision": "run",
        "patterns": ("a",),
        "duration": 0.5,
    }
    try:
        probe = fast(dict(sample))
        probe.error = ValueError("x")
        reference = validated(dict(sample))
        reference.error = probe.error
        same = probe == reference and probe.model_dump() == reference.model_dump()
    except Exception:
        same = False
    return fast if same and fields_set == set(StepOutcome.model_fields) else validated


_new_outcome = _fast_outcomes()


# Names already validated, so that the hot path checks a set, not a regex.
# Bounded: cleared when full, which only costs re-validation.
_valid_names: set[str] = set()
_VALID_CACHE_SIZE = 65_536


def _remember_valid(name: str) -> None:
    if len(_valid_names) >= _VALID_CACHE_SIZE:
        _valid_names.clear()
    _valid_names.add(name)


def _add(table: dict[str, list[str]], patterns: list[str], reason: str | None) -> None:
    for pattern in patterns:
        reasons = table.setdefault(pattern, [])
        if reason is not None and reason not in reasons:
            reasons.append(reason)
