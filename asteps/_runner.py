"""Runner: decides each step, then runs its phases, one step one coroutine.

A step is decided, then either run or skipped (simpleflow's reference document):

- run:  marker ``scheduled`` -> activities -> mark done -> marker ``completed``;
- skip: ``activities_if_step_already_done`` -> marker ``skipped``;
- then, with ``emit_signal``, the signal ``step.<name>``.

Why it works this way:

- **Decisions follow submission order.** The first step lists the store;
  steps submitted meanwhile queue as *turns*, and when the listing ends, every
  queued step is decided in that same pass, in order, and woken together
  (anyio's Lock would hand over to one waiter per event-loop iteration: 2,000
  gathered steps took 2,012 iterations; see ``docs/choices.md``). Once the
  done set is listed and nobody waits, a step decides synchronously: deciding
  and forcing its dependents with no ``await`` in between is atomic on one
  event loop. So the store is listed once per runner and a step's dependents
  are forced before any step decided after it. A step with dependents whose
  marker body must be read (``keep_result``, ``rerun_on_new_version``) reads
  it in its turn, before the steps behind it decide. A step cancelled, or
  whose listing fails, while it works through the turns hands the work to the
  first step still waiting, which lists again.
- **Single flight.** A step submitted while a step of the same name is in
  flight in this runner waits for it: if that one completed (or was skipped),
  this one is skipped with its result; if it failed or was cancelled, this one
  decides again.
- **Exclusive steps** (``exclusive=True``) claim the step in the store before
  running it, so that runners in other processes and machines do not run it
  at the same time (``asteps._claims``). Off by default: then no request is
  added.
- **Cancellation never marks a step done.** One checkpoint before the first
  side effect: a step in a cancelled scope never runs and is never marked,
  including one whose sync activity's thread returns late (``_canvas`` checks
  for it when the thread returns). A plain skip has no side effect to guard
  and returns even in a cancelled scope (``docs/choices.md``).
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
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Unpack

import anyio
import anyio.lowlevel

from . import _telemetry
from ._bus import EventBus, Signal
from ._canvas import close_unawaited, run_activity, start_activity
from ._claims import DEFAULT_LEASE, Claims, Held, check_lease
from ._decision import JOINED, Decision, decide, decide_with_body, played_by
from ._names import DEFAULT_PREFIX as DEFAULT_PREFIX  # importable from here, as it was
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
from ._retries import Attempts, Retry, check_retry, check_time_limit
from ._step import (
    STEP_OPTIONS,
    Activity,
    Marker,
    OnMissingResult,
    Status,
    Step,
    StepOptions,
    StepOutcome,
)
from .errors import (
    AstepsError,
    ClaimLost,
    ClaimsNotSupported,
    MarkDoneError,
    MarkerBodyError,
    ResultMissing,
    ResultNotKept,
    describe,
)
from .stores.base import DoneStore, HoldsClaims, ReadsMarkers

logger = logging.getLogger("asteps")

_NOTHING_KEPT = KeptResult()


class Runner:
    """Runs the steps of one workflow against a :class:`DoneStore`.

    ``prefix`` is a template formatted with ``workflow_id`` and the keys of
    ``context`` (simpleflow's ``get_step_path_prefix``). With ``dry_run=True``
    decisions are made against the real done list but no activity runs and
    nothing is written or signalled. ``done``, when given, is used as the done
    list instead of listing the store (batch reruns list many at once).
    ``max_result_bytes`` bounds the JSON of a kept result (``keep_result``).
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
        self.workflow_id = validate_workflow_id(workflow_id)
        self.prefix = format_prefix(prefix, workflow_id, context)
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
        self._log: list[_Entry] = []
        self._flights: dict[str, _Flight] = {}
        self._forced: dict[str, list[str]] = {}
        self._skipped: dict[str, list[str]] = {}
        self._done: set[str] | None = set(done) if done is not None else None
        self._turns: deque[_Turn] = deque()  # steps waiting to decide, in order
        self._working = False  # a step is working through the turns
        self._pass: anyio.Event | None = None  # what the waiting steps wait for
        self._body = {"run_id": self.run_id, "workflow_id": workflow_id, "version": version}

    def __repr__(self) -> str:
        return f"Runner({self.store!r}, {self.workflow_id!r}, prefix={self.prefix!r})"

    @property
    def markers(self) -> list[Marker]:
        """The ``log.step`` markers recorded so far, in order."""
        return [Marker("log.step", _details(*entry)) for entry in self._log]

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

    # -- submitting steps ------------------------------------------------------

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
            return await self._step(name, activities, options, self.store)
        # instrument() was called: the same step, in a span, on a traced store.
        return await telemetry.step(
            self, name, lambda store: self._step(name, activities, options, store)
        )

    async def _step(
        self, name: str, activities: Activity, options: StepOptions, store: DoneStore
    ) -> StepOutcome:
        alternative = options.get("activities_if_step_already_done")
        try:
            # 1. The step as asked: every check before anything is read or run.
            if options and not STEP_OPTIONS.issuperset(options):
                raise TypeError(_unknown_options(options))
            validate_name(name)
            deps = options.get("force_steps_if_executed")
            patterns = validate_patterns(deps) if deps else None
            keep = options.get("keep_result", False)
            check_keep(keep)
            on_missing = _check_on_missing(options.get("on_missing_result", "run"))
            reread = bool(keep) or bool(options.get("rerun_on_new_version", False))
            force = bool(options.get("force", False))
            exclusive = options.get("exclusive")
            claims = self._claims(store) if self._exclusive(exclusive) else None
            retry = options.get("retry")
            retry = check_retry(self.retry if retry is None else retry, activities)
            time_limit = check_time_limit(options.get("time_limit"))
            if time_limit is None:
                time_limit = self.time_limit

            # 2. The decision, in submission order, and once per name in flight.
            while True:
                flight = self._flights.get(name)
                if flight is not None:
                    first = await flight.finished()
                    if first is None:
                        continue  # it failed or was cancelled: decide again
                    close_unawaited(activities, alternative)
                    return await self._joined(name, first, options)
                if (
                    self._done is not None
                    and not self._turns
                    and not self._working
                    and not (reread and patterns)
                ):
                    # Listed, and no step waits to decide: this is the step's turn.
                    decision, flight = self._decide_now(name, force, patterns, reread)
                    kept = _NOTHING_KEPT
                    break
                turn = _Turn(name, force, patterns, reread, options, store)
                decided = await self._wait_turn(turn)
                if decided is not None:
                    decision, kept, flight = decided
                    break
        except BaseException:
            close_unawaited(activities, alternative)  # it will never run
            raise
        outcome: StepOutcome | None = None
        try:
            if reread and not patterns and _needs_body(decision):
                # Done, and only its marker's body can tell whether that stands.
                # With no dependents to force, it is read outside its turn.
                decision, kept = await self._reread(name, decision, options, store)
            if logger.isEnabledFor(logging.DEBUG):  # building the arguments costs too
                self._log_decision(name, decision)
            bubbles = options.get("bubbles_exception_on_failure", False)
            emit = options.get("emit_signal", False)

            # 3. Run, skip, or plan.
            if self.dry_run:
                close_unawaited(activities, alternative)
                outcome = _outcome(name, "planned", decision)
            elif kept.problem is not None and on_missing == "error":
                close_unawaited(activities, alternative)
                await anyio.lowlevel.checkpoint_if_cancelled()
                missing = ResultMissing(f"step {name!r} is done but {kept.problem}")
                outcome = await self._failed(name, decision, missing, time.perf_counter(), bubbles)
            elif decision.run:
                close_unawaited(alternative)
                attempts = None
                if retry is not None or time_limit is not None:
                    attempts = self._attempts(name, decision, retry, time_limit)
                outcome = await self._execute(
                    name, decision, activities, keep, store, claims, bubbles, attempts
                )
            else:
                close_unawaited(activities)
                started = time.perf_counter()
                result = kept.value
                try:
                    if alternative is not None or emit or self.bus.listening("log.step"):
                        await anyio.lowlevel.checkpoint_if_cancelled()
                    if alternative is not None:
                        alternative_result = await run_activity(alternative)
                        if result is None:  # a kept result is what the step returns
                            result = alternative_result
                    if (details := self._record(name, "skipped", decision)) is not None:
                        await self.bus.publish("log.step", details)
                except Exception as exc:
                    outcome = await self._failed(name, decision, exc, started, bubbles)
                else:
                    outcome = _outcome(name, "skipped", decision, started, result)

            # 4. The signal, and the outcome on record.
            if emit and outcome.status in ("completed", "skipped"):
                await self.bus.publish(f"step.{name}", self._signal_payload(outcome))
            self.outcomes.append(outcome)
            return outcome
        finally:
            if flight is not None:  # joiners see how it ended (None: decide again)
                del self._flights[name]
                flight.finish(outcome)

    async def submit(self, step: Step) -> StepOutcome:
        """Run a :class:`Step` built beforehand."""
        return await self.step(step.name, step.activities, **step.options())

    async def wait_signal(self, name: str, timeout: float | None = None) -> Signal:
        """Wait for signal ``name`` on the runner's bus.

        A signal already published on the bus counts, as a signal already in an
        SWF workflow's history does. Raises :class:`SignalTimeout` on timeout.
        """
        return await self.bus.wait(name, timeout, include_past=True)

    # -- deciding ------------------------------------------------------------------

    def _decide_now(
        self, name: str, force: bool, deps: list[str] | None, reread: bool
    ) -> tuple[Decision, _Flight | None]:
        """Decide, force the dependents of a step that runs, and put a step that
        will await anything in flight: all without an ``await``, so atomically."""
        assert self._done is not None
        decision = decide(
            name, force=force, forced=self._forced, skipped=self._skipped, done=self._done
        )
        if decision.run and deps:
            self.add_forced_steps(deps, reason=f"Dep of {name}")
        flight = None
        if not self.dry_run and (decision.run or (reread and _needs_body(decision))):
            flight = self._flights[name] = _Flight()
        return decision, flight

    async def _wait_turn(self, turn: _Turn) -> _Decided | None:
        """Queue ``turn`` and wait until it is decided; None when a step of the
        same name went in flight meanwhile (the caller joins it)."""
        self._turns.append(turn)
        try:
            while turn.pending:
                if not self._working:  # nobody is deciding the queue: this step does
                    await self._work_through(turn)
                    continue
                if self._pass is None:
                    self._pass = anyio.Event()
                await self._pass.wait()
        finally:
            if turn.pending:  # cancelled, or its listing failed: out of the queue
                self._turns.remove(turn)
            if self._turns and not self._working:
                self._end_pass()  # the steps still waiting go on deciding
        if turn.error is not None:
            raise turn.error
        return turn.decided

    async def _work_through(self, mine: _Turn) -> None:
        """Decide every waiting step in submission order, listing the store first
        if nothing is listed yet, and reading the marker body of a step with
        dependents before deciding those after it.

        One step works for all: when the listing ends, every step queued behind
        it is decided in that same pass, and woken together. If this step is
        cancelled or the listing fails, the first step still waiting takes over
        (and lists again). Once its own turn is decided, it leaves the body read
        of a later step to that step.
        """
        self._working = True
        try:
            while self._turns:
                turn = self._turns[0]
                if not mine.pending and turn.reread and turn.deps:
                    break  # an await for another step: that step does it
                if self._done is None:
                    self._end_pass()  # the steps decided so far go on meanwhile
                    self._done = set(await turn.store.list_done(self.prefix))
                    logger.debug(
                        "%s: %d steps done under %r",
                        self.workflow_id,
                        len(self._done),
                        self.prefix,
                        extra={"workflow_id": self.workflow_id},
                    )
                    continue
                try:
                    turn.decided = await self._decide_turn(turn)
                except Exception as exc:  # its body could not be read: its own failure
                    turn.error = exc
                self._turns.popleft()
                turn.pending = False
        finally:
            self._working = False
            self._end_pass()

    def _end_pass(self) -> None:
        """Wake every waiting step: the decided go on, the others look again."""
        if self._pass is not None:
            self._pass.set()
            self._pass = None

    async def _decide_turn(self, turn: _Turn) -> _Decided | None:
        """Decide one waiting step, reading its body first if it has dependents."""
        name = turn.name
        if name is None or name in self._flights:
            return None
        if not (turn.reread and turn.deps):
            decision, flight = self._decide_now(name, turn.force, turn.deps, turn.reread)
            return decision, _NOTHING_KEPT, flight
        # Its dependents must be forced before any step decided after it: its
        # marker's body is read before the steps behind it are decided.
        assert self._done is not None
        decision = decide(
            name, force=turn.force, forced=self._forced, skipped=self._skipped, done=self._done
        )
        kept = _NOTHING_KEPT
        if _needs_body(decision):
            self._end_pass()  # the steps decided so far go on meanwhile
            decision, kept = await self._reread(name, decision, turn.options, turn.store)
        if decision.run:
            self.add_forced_steps(turn.deps, reason=f"Dep of {name}")
        flight = None
        if decision.run and not self.dry_run:
            flight = self._flights[name] = _Flight()
        return decision, kept, flight

    async def steps_done(self) -> frozenset[str]:
        """The steps done for this workflow, listed from the store once."""
        if self._done is None or self._turns or self._working:
            store = _telemetry.traced_store(self.store)
            await self._wait_turn(_Turn(None, False, None, False, {}, store))
        assert self._done is not None
        return frozenset(self._done)

    async def _reread(
        self, name: str, decision: Decision, options: StepOptions, store: DoneStore
    ) -> tuple[Decision, KeptResult]:
        """Decide a done step again from its marker's body (kept result, version)."""
        if not isinstance(store, ReadsMarkers):
            raise AstepsError(
                f"{store!r} cannot read marker bodies, which keep_result and "
                "rerun_on_new_version need: give it read_marker(prefix, name), or use "
                "MemoryStore, FileStore or S3Store"
            )
        keep = options.get("keep_result", False)
        try:
            body = await store.read_marker(self.prefix, name)
        except MarkerBodyError as exc:
            body, kept = None, KeptResult(problem=f"result invalid: {exc}")
        else:
            kept = decode_result(body, keep) if keep else _NOTHING_KEPT
        decision = decide_with_body(
            decision,
            keeps_result=bool(keep),
            result_problem=kept.problem,
            stored_version=(body or {}).get("version"),
            version=self.version,
            rerun_on_new_version=options.get("rerun_on_new_version", False),
            on_missing_result=options.get("on_missing_result", "run"),
        )
        return decision, kept

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

    def _exclusive(self, asked: bool | None) -> bool:
        return (self.exclusive if asked is None else bool(asked)) and not self.dry_run

    def _check_claims(self, store: DoneStore) -> HoldsClaims:
        if not isinstance(store, HoldsClaims) or not isinstance(store, ReadsMarkers):
            raise ClaimsNotSupported(
                f"{store!r} cannot hold claims, which exclusive steps need: give it "
                "create_claim, read_claim, replace_claim, delete_claim and read_marker "
                "(asteps.stores.base.HoldsClaims), or use MemoryStore, FileStore or S3Store"
            )
        return store

    def _claims(self, store: DoneStore) -> Claims:
        return Claims(self._check_claims(store), self.lease, self.run_id, self.workflow_id)

    # -- executing -----------------------------------------------------------------

    async def _execute(
        self,
        name: str,
        decision: Decision,
        activities: Activity,
        keep: object,
        store: DoneStore,
        claims: Claims | None,
        bubbles: bool,
        attempts: Attempts | None,
    ) -> StepOutcome:
        """The phases of a step that runs, in order: claim (exclusive steps),
        marker ``scheduled``, the activities (attempted again as ``attempts``
        says, if given), mark done, marker ``completed``."""
        started = time.perf_counter()
        held: Held | None = None
        ran = False
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # before the first side effect
            if claims is not None:
                taken = await claims.take(self.prefix, name, forced=decision.forced)
                if not isinstance(taken, Held):  # another runner played it meanwhile
                    return await self._played_elsewhere(name, taken, keep, started)
                held = taken
            if (details := self._record(name, "scheduled", decision)) is not None:
                await self.bus.publish("log.step", details)
            ran = True
            try:
                if held is None:
                    result = await _start(activities, attempts)
                else:
                    result = await _run_holding(held, activities, attempts)
            except Exception as exc:
                tries = 1 if attempts is None else attempts.count
                return await self._failed(name, decision, exc, started, bubbles, tries)
            tries = 1 if attempts is None else attempts.count
            try:
                body: Mapping[str, Any] = self._body
                if keep:  # the result goes in the same single write as the marker
                    try:
                        value = encode_result(result, keep, self.max_result_bytes)
                    except ValueError as exc:
                        raise ResultNotKept(name, result, str(exc)) from exc
                    body = {**body, RESULT_KEY: value}
                if held is not None:
                    await held.check()  # never a marker after the lease could expire
                try:
                    await store.mark_done(self.prefix, name, body)
                except Exception as exc:
                    raise MarkDoneError(name, result, prefix=self.prefix, cause=exc) from exc
            except ClaimLost as exc:
                return await self._failed(name, decision, exc, started, bubbles, tries)
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
                outcome = _outcome(name, "failed", decision, started, result, exc, tries)
                self.outcomes.append(outcome)  # raised, not returned: keep it on record
                raise
            if self._done is not None:
                self._done.add(name)
            more = {"attempts": tries} if tries > 1 else None
            if (details := self._record(name, "completed", decision, None, more)) is not None:
                await self.bus.publish("log.step", details)
            return _outcome(name, "completed", decision, started, result, None, tries)
        finally:
            if not ran:
                close_unawaited(activities)
            if held is not None:
                await held.release()

    async def _played_elsewhere(
        self, name: str, marker: Mapping[str, Any], keep: object, started: float
    ) -> StepOutcome:
        """Skipped: another runner held the claim, and marked the step done."""
        decision = played_by(marker.get("run_id"))
        result = decode_result(marker, keep).value if keep else None
        if self._done is not None:
            self._done.add(name)
        if (details := self._record(name, "skipped", decision)) is not None:
            await self.bus.publish("log.step", details)
        return _outcome(name, "skipped", decision, started, result)

    async def _joined(self, name: str, first: StepOutcome, options: StepOptions) -> StepOutcome:
        """Skipped: a call of the same name in flight in this runner played it."""
        if (details := self._record(name, "skipped", JOINED)) is not None:
            await self.bus.publish("log.step", details)
        outcome = _outcome(name, "skipped", JOINED, result=first.result)
        if options.get("emit_signal", False):
            await self.bus.publish(f"step.{name}", self._signal_payload(outcome))
        self.outcomes.append(outcome)
        return outcome

    async def _failed(
        self,
        name: str,
        decision: Decision,
        exc: Exception,
        started: float,
        bubbles: bool,
        attempts: int = 1,
    ) -> StepOutcome:
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
        outcome = _outcome(name, "failed", decision, started, error=exc, attempts=attempts)
        if bubbles:
            self.outcomes.append(outcome)  # raised, not returned: keep it on record
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

    # -- markers and signals ---------------------------------------------------------

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
            return _details(name, status, decision, error, more)
        return None

    def _signal_payload(self, outcome: StepOutcome) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "step": outcome.name,
            "status": outcome.status,
            "forced": outcome.forced,
            "reasons": list(outcome.reasons),
        }


_Decided = tuple[Decision, KeptResult, "_Flight | None"]
_Entry = tuple[str, str, Decision, BaseException | None, Mapping[str, Any] | None]
"""A ``log.step`` marker as recorded: step, status, decision, error, more details."""


class _Turn:
    """A step waiting to decide: submitted while the store is being listed, or
    while a step with dependents reads its marker's body."""

    __slots__ = (
        "decided",
        "deps",
        "error",
        "force",
        "name",
        "options",
        "pending",
        "reread",
        "store",
    )

    def __init__(
        self,
        name: str | None,
        force: bool,
        deps: list[str] | None,
        reread: bool,
        options: StepOptions,
        store: DoneStore,
    ) -> None:
        self.name = name  # None: only waits for the listing (steps_done)
        self.force = force
        self.deps = deps
        self.reread = reread
        self.options = options
        self.store = store
        self.pending = True
        self.decided: _Decided | None = None
        self.error: Exception | None = None


class _Flight:
    """A step in flight in a runner, which later calls of the same name wait for."""

    __slots__ = ("_ended", "outcome")

    def __init__(self) -> None:
        self.outcome: StepOutcome | None = None
        self._ended: anyio.Event | None = None  # made when someone waits: most never are

    async def finished(self) -> StepOutcome | None:
        """Wait for the step to end; its outcome if it completed or was skipped,
        None if it failed or was cancelled."""
        if self._ended is None:
            self._ended = anyio.Event()
        await self._ended.wait()
        outcome = self.outcome
        return outcome if outcome is not None and outcome.status != "failed" else None

    def finish(self, outcome: StepOutcome | None) -> None:
        self.outcome = outcome
        if self._ended is not None:
            self._ended.set()


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


def _needs_body(decision: Decision) -> bool:
    """Only a skip because the step is done (no pattern decided it) is
    reconsidered from its marker's body."""
    return not decision.run and not decision.forced


def _details(
    name: str,
    status: str,
    decision: Decision,
    error: BaseException | None,
    more: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    details: dict[str, Any] = {
        "step": name,
        "status": status,
        "forced": decision.forced,
        "reasons": list(decision.reasons),
    }
    if error is not None:
        details["error"] = describe(error)
    if more:
        details.update(more)
    return details


def _outcome(
    name: str,
    status: Status,
    decision: Decision,
    started: float | None = None,
    result: Any = None,
    error: BaseException | None = None,
    attempts: int = 1,
) -> StepOutcome:
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


def _unknown_options(options: Mapping[str, Any]) -> str:
    unknown = sorted(set(options) - STEP_OPTIONS)
    return (
        f"unknown step option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
        f"the options are {', '.join(sorted(STEP_OPTIONS))}"
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
