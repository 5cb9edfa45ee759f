"""Runner: decides each step, then runs its phases, one step one coroutine.

A step is decided, then either run or skipped (simpleflow's reference document):

- run:  marker ``scheduled`` -> activities -> mark done -> marker ``completed``;
- skip: ``activities_if_step_already_done`` -> marker ``skipped``;
- then, with ``emit_signal``, the signal ``step.<name>``.

Why it works this way:

- **Decisions follow submission order** (``asteps._turns``). The first step
  lists the store, once per runner; steps submitted meanwhile wait their turn
  and are decided in order. Once listed and with nobody waiting, a step
  decides synchronously, forcing its dependents before any later decision.
- **Single flight.** A step submitted while a step of the same name is in
  flight in this runner waits for it: if that one completed (or was skipped),
  this one is skipped with its result; if it failed or was cancelled, this one
  decides again.
- **Options are checked before anything is read or run** (``asteps._options``);
  the runner's defaults are checked once, when it is built.
- **Exclusive steps** (``exclusive=True``) claim the step in the store before
  running it, so that runners in other processes and machines do not run it
  at the same time (``asteps._claims``). Off by default: then no request is
  added. A step another runner played while this one waited for the claim is
  judged by that runner's marker, as a step found done is (kept result,
  version, ``activities_if_step_already_done``): the same skip, one code path.
- **Cancellation never marks a step done.** One checkpoint before the first
  side effect: a step in a cancelled scope never runs and is never marked.
  One more before the done marker, for activities that return after their
  step was cancelled without awaiting again (a shielded section; a sync
  activity's thread, which ``_canvas`` also checks when it returns). A plain
  skip has no side effect to guard and returns even in a cancelled scope
  (``docs/choices.md``). The phases of a step that runs are in
  ``asteps._phases``.
- **Retries and time limits** (``retry=``, ``time_limit=``) wrap the
  activities only, inside the claim and between the markers ``scheduled`` and
  ``completed``: each failed attempt that is retried is a marker ``retrying``,
  and the step is marked done once, after the attempt that succeeded
  (``asteps._retries``). A step with neither runs its activities directly.
- **Telemetry** (``asteps.instrument()``) costs one look at
  ``_telemetry.active`` per step while it is off. While on, the step runs in a
  span on a traced store: the store a step uses is passed down, never swapped
  on the runner.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Unpack

import anyio.lowlevel

from . import _telemetry
from ._bus import EventBus, Signal
from ._canvas import Activity, close_unawaited, run_activity
from ._claims import DEFAULT_LEASE, Claims, Held, check_lease
from ._decision import Decision
from ._names import DEFAULT_PREFIX as DEFAULT_PREFIX  # importable from here, as it was
from ._names import format_prefix, validate_name, validate_patterns, validate_workflow_id
from ._options import Asked, check_options
from ._phases import Entry, Phases, fails_missing, make_outcome, marker_details
from ._results import DEFAULT_MAX_RESULT_BYTES, check_max_result_bytes
from ._retries import Retry, check_time_limit
from ._step import Marker, Step, StepOptions, StepOutcome
from ._telemetry import StepSpan
from ._turns import NOTHING_KEPT, Turn, Turns, add, markers_readable, needs_body
from .errors import ClaimsNotSupported, ResultMissing
from .stores.base import ChecksPrefixes, DoneStore, HoldsClaims, check_store

logger = logging.getLogger("asteps")


class Runner(Phases):
    """Runs the steps of one workflow against a :class:`DoneStore`.

    ``prefix`` is a template formatted with ``workflow_id`` and the keys of
    ``context`` (simpleflow's ``get_step_path_prefix``). With ``dry_run=True``
    decisions are made against the real done list but no activity runs and
    nothing is written or signalled. ``done``, when given, is used as the done
    list instead of listing the store (batch reruns list many at once). A
    store that refuses some prefixes (:class:`~asteps.stores.ChecksPrefixes`,
    as S3Store does) checks this one here, ``done`` given or not:
    :class:`~asteps.errors.InvalidPrefix` before any step runs.
    ``max_result_bytes`` bounds the JSON of a kept result's marker body (``keep_result``).
    ``retry`` and ``time_limit`` are the defaults of every step's options of
    those names (see :class:`Retry`).

    With ``exclusive=True`` every step is claimed in the store before it runs,
    so that no other runner (in this process, another, or another machine)
    runs it at the same time; ``runner.step(..., exclusive=...)`` chooses per
    step. A claim is held for ``lease`` seconds and renewed every third of it;
    a claim left unrenewed for a lease is taken over (see the guide "Steps in a
    service with replicas").
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
        exclusive: bool = False,
        lease: float = DEFAULT_LEASE,
        retry: Retry | None = None,
        time_limit: float | None = None,
    ) -> None:
        check_store(store)
        self.workflow_id = validate_workflow_id(workflow_id)
        self.prefix = format_prefix(prefix, workflow_id, context)
        if isinstance(store, ChecksPrefixes):  # once, here: never per step
            store.check_prefix(self.prefix)
        self.store = store
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex
        self.version = version
        self.bus = bus if bus is not None else EventBus()
        self.dry_run = dry_run
        self.max_result_bytes = check_max_result_bytes(max_result_bytes)
        self.exclusive = bool(exclusive)
        self.lease = check_lease(lease)
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be an asteps.Retry or None, got {retry!r}")
        self.retry = retry
        self.time_limit = check_time_limit(time_limit)
        if self.exclusive and not dry_run:
            self._check_claims(store)
        self.outcomes: list[StepOutcome] = []
        """Every step's outcome, in the order the steps finished."""
        self._log: list[Entry] = []
        self._turns = Turns(self.prefix, self.workflow_id, version, dry_run, done)
        self._body = {"run_id": self.run_id, "workflow_id": workflow_id, "version": version}
        # What a step given no option asks: the runner's defaults, checked once.
        self._defaults = Asked(exclusive=self.exclusive, time_limit=self.time_limit)

    def __repr__(self) -> str:
        return f"Runner({self.store!r}, {self.workflow_id!r}, prefix={self.prefix!r})"

    @property
    def markers(self) -> list[Marker]:
        """The ``log.step`` markers recorded so far, in order."""
        return [Marker("log.step", marker_details(*entry)) for entry in self._log]

    # -- forced and skipped patterns ------------------------------------------

    def add_forced_steps(self, steps: str | Iterable[str], reason: str | None = None) -> None:
        """Force these patterns (``a`` forces ``a.b.c``; ``*`` forces all)."""
        add(self._turns.forced, validate_patterns(steps), reason)

    def add_skipped_steps(self, steps: str | Iterable[str], reason: str | None = None) -> None:
        """Skip these patterns; forcing takes precedence over skipping."""
        add(self._turns.skipped, validate_patterns(steps), reason)

    def get_forced_steps(self) -> list[str]:
        """The forced patterns, in the order they were added (one added without a
        reason counts as added when it is first given one)."""
        return list(self._turns.forced)

    def get_skipped_steps(self) -> list[str]:
        """The skipped patterns, in the order they were added (one added without a
        reason counts as added when it is first given one)."""
        return list(self._turns.skipped)

    # -- a step ----------------------------------------------------------------

    async def step(
        self, name: str, activities: Activity, **options: Unpack[StepOptions]
    ) -> StepOutcome:
        """Run ``activities`` as step ``name`` unless it is done (or skipped).

        Returns the :class:`StepOutcome`. A failure of the activities gives an
        outcome with status ``failed`` (raised instead when
        ``bubbles_exception_on_failure``); a marker that cannot be written
        raises :class:`MarkDoneError` carrying the step's result. A misspelt
        option raises ``TypeError`` before anything runs. A coroutine given as
        ``activities`` (or as the alternative) that will not run is closed.
        """
        telemetry = _telemetry.active
        if telemetry is None:
            return await self._step(name, activities, options, self.store, None)
        # instrument() was called: the same step, in a span, on a traced store.
        with telemetry.step_span(self.workflow_id, self.run_id, name) as span:
            return await self._step(name, activities, options, telemetry.traced(self.store), span)

    async def _step(
        self,
        name: str,
        activities: Activity,
        options: StepOptions,
        store: DoneStore,
        span: StepSpan | None,
    ) -> StepOutcome:
        alternative = options.get("activities_if_step_already_done")
        turns = self._turns
        try:
            # 1. The step as asked: every check before anything is read or run.
            asked = self._asked(options, activities)
            validate_name(name)
            claims = self._claims(store) if asked.exclusive and not self.dry_run else None
            if asked.reread:  # on the first run too, not once there is a body to read
                markers_readable(store)

            # 2. The decision, in submission order, and once per name in flight.
            while True:
                flight = turns.flights.get(name)
                if flight is not None:
                    first = await flight.finished()
                    if first is None:
                        continue  # it failed or was cancelled: decide again
                    close_unawaited(activities, alternative)
                    return await self._joined(name, first, asked.emit, span)
                if turns.open(asked):  # this is the step's turn: decided with no await
                    decision, flight = turns.decide_now(name, asked)
                    kept = NOTHING_KEPT
                    break
                decided = await turns.wait(Turn(name, asked, store))
                if decided is not None:
                    decision, kept, flight = decided
                    break
        except BaseException:
            close_unawaited(activities, alternative)  # it will never run
            raise
        outcome: StepOutcome | None = None
        held: Held | None = None  # an exclusive step's claim, released however it ends
        try:
            if asked.reread and not asked.deps and needs_body(decision):
                # Done, and only its marker's body can tell whether that stands.
                # With no dependents to force, it is read outside its turn.
                decision, kept = await turns.reread(name, decision, asked, store)
            if logger.isEnabledFor(logging.DEBUG):  # building the arguments costs too
                self._log_decision(name, decision)

            # 3. The claim, for an exclusive step to run: another runner may
            # play it meanwhile, and then its marker decides as a done step's does.
            started = time.perf_counter()
            if claims is not None and decision.run and not fails_missing(kept, asked):
                decision, kept, held = await self._claim(name, decision, kept, asked, claims)

            # 4. Run, skip, or plan.
            if self.dry_run:
                close_unawaited(activities, alternative)
                outcome = make_outcome(name, "planned", decision)
            elif fails_missing(kept, asked):
                close_unawaited(activities, alternative)
                await anyio.lowlevel.checkpoint_if_cancelled()
                missing = ResultMissing(f"step {name!r} is done but {kept.problem}")
                outcome = await self._failed(name, decision, missing, started, asked.bubbles, span)
            elif decision.run:
                close_unawaited(alternative)
                attempts = None
                if asked.retry is not None or asked.time_limit is not None:
                    attempts = self._attempts(name, decision, asked.retry, asked.time_limit)
                outcome = await self._execute(
                    name, decision, activities, asked, store, held, attempts, started, span
                )
            else:
                close_unawaited(activities)
                result = kept.value
                try:
                    if alternative is not None or asked.emit or self.bus.listening("log.step"):
                        await anyio.lowlevel.checkpoint_if_cancelled()
                    if alternative is not None:
                        alternative_result = await run_activity(alternative)
                        # A kept result is what the step returns, even None.
                        if kept is NOTHING_KEPT or kept.problem is not None:
                            result = alternative_result
                    if (details := self._record(name, "skipped", decision)) is not None:
                        await self.bus.publish("log.step", details)
                except Exception as exc:
                    outcome = await self._failed(name, decision, exc, started, asked.bubbles, span)
                else:
                    outcome = make_outcome(name, "skipped", decision, started, result)

            # 5. The signal, and the outcome on record.
            if asked.emit and outcome.status in ("completed", "skipped"):
                await self.bus.publish(f"step.{name}", self._signal_payload(outcome))
            self._put_on_record(outcome, span)
            return outcome
        except BaseException:
            close_unawaited(activities, alternative)  # what did not run never will
            raise
        finally:
            if flight is not None:  # joiners see how it ended (None: decide again)
                turns.land(name, flight, outcome)
            if held is not None:
                await held.release()

    def _asked(self, options: StepOptions, activities: Activity) -> Asked:
        """The step's options, checked; the runner's defaults when none is given."""
        if not options and self.retry is None:
            return self._defaults
        return check_options(
            options,
            activities,
            exclusive=self.exclusive,
            retry=self.retry,
            time_limit=self.time_limit,
        )

    async def submit(self, step: Step) -> StepOutcome:
        """Run a :class:`Step` built beforehand."""
        return await self.step(step.name, step.activities, **step.options())

    async def wait_signal(
        self,
        name: str,
        timeout: float | None = None,  # noqa: ASYNC109 (a documented convenience)
    ) -> Signal:
        """Wait for signal ``name`` on the runner's bus.

        A signal already published on the bus counts, as a signal already in an
        SWF workflow's history does. Bound the wait with a cancel scope
        (``with anyio.fail_after(60): await runner.wait_signal("step.a")``);
        ``timeout`` is a convenience that raises :class:`SignalTimeout` (a
        ``TimeoutError``).
        """
        return await self.bus.wait(name, timeout, include_past=True)

    async def steps_done(self) -> frozenset[str]:
        """The steps done for this workflow, listed from the store once."""
        return await self._turns.listed(_telemetry.traced_store(self.store), self._defaults)

    def _log_decision(self, name: str, decision: Decision) -> None:
        logger.debug(
            "%s: step %s: %s%s %s",
            self.workflow_id,
            name,
            decision.action,
            " (forced)" if decision.forced else "",
            list(decision.reasons),
            extra={"workflow_id": self.workflow_id, "step": name, "decision": decision.action},
        )

    # -- exclusive steps -------------------------------------------------------------

    def _check_claims(self, store: DoneStore) -> HoldsClaims:
        if not isinstance(store, HoldsClaims):  # which includes ReadsMarkers
            raise ClaimsNotSupported(
                f"{store!r} cannot hold claims, which exclusive steps need: give it "
                "create_claim, read_claim, replace_claim, delete_claim and read_marker "
                "(asteps.stores.base.HoldsClaims), or use MemoryStore, FileStore or S3Store"
            )
        return store

    def _claims(self, store: DoneStore) -> Claims:
        return Claims(self._check_claims(store), self.lease, self.run_id, self.workflow_id)
