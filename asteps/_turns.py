"""Deciding a runner's steps: in submission order, and once per name in flight.

:class:`Turns` holds what a runner decides with: the done set (listed from
the store once), the forced and skipped patterns, the steps waiting to decide
(*turns*), and the steps in flight (:class:`Flight`).

Why it works this way:

- **Decisions follow submission order.** The first step lists the store;
  steps submitted meanwhile queue as turns, and when the listing ends, every
  queued step is decided in that same pass, in order, and woken together
  (anyio's Lock would hand over to one waiter per event-loop iteration: 2,000
  gathered steps took 2,012 iterations; see ``docs/choices.md``). Once the
  done set is listed and nobody waits, a step decides synchronously
  (:meth:`Turns.decide_now`): deciding and forcing its dependents with no
  ``await`` in between is atomic on one event loop. So the store is listed
  once per runner and a step's dependents are forced before any step decided
  after it.
- **Bodies under the lock only when needed.** A step with dependents whose
  marker body must be read (``keep_result``, ``rerun_on_new_version``) reads
  it in its turn, before the steps behind it decide; any other step reads it
  after its decision, outside the queue.
- **Hand-over.** A step cancelled, or whose listing fails, while it works
  through the turns hands the work to the first step still waiting, which
  lists again. A step cancelled once decided, or while another step reads its
  body for it, leaves the queue and nothing in flight: a later call of its
  name decides again.
- **Single flight.** A step that will await anything is put in flight under
  its name as it is decided; a later call of the same name waits for it
  (:meth:`Flight.finished`) and joins its outcome, or decides again if it
  failed or was cancelled.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio

from ._decision import Decision, decide, decide_with_body
from ._options import Asked
from ._results import KeptResult, decode_result
from ._step import StepOutcome
from .errors import MarkerBodyError, MarkersNotReadable
from .stores.base import DoneStore, ReadsMarkers

logger = logging.getLogger("asteps")

NOTHING_KEPT = KeptResult()
"""The kept result of a step whose marker body was not read."""

Decided = tuple[Decision, KeptResult, "Flight | None"]
"""A step's decision, its kept result, and its flight if it will await anything."""


class Flight:
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


class Turn:
    """A step waiting to decide: submitted while the store is being listed, or
    while a step with dependents reads its marker's body."""

    __slots__ = ("asked", "decided", "error", "name", "pending", "store")

    def __init__(self, name: str | None, asked: Asked, store: DoneStore) -> None:
        self.name = name  # None: only waits for the listing (steps_done)
        self.asked = asked
        self.store = store
        self.pending = True
        self.decided: Decided | None = None
        self.error: Exception | None = None


class Turns:
    """The done set, the patterns, the steps waiting to decide and those in
    flight, of one runner (see the module's docstring)."""

    def __init__(
        self,
        prefix: str,
        workflow_id: str,
        version: str | None,
        dry_run: bool,
        done: Iterable[str] | None,
    ) -> None:
        self.prefix = prefix
        self.workflow_id = workflow_id
        self.version = version
        self.dry_run = dry_run
        self.done: set[str] | None = set(done) if done is not None else None
        self.forced: dict[str, list[str]] = {}
        self.skipped: dict[str, list[str]] = {}
        self.flights: dict[str, Flight] = {}
        self.waiting: deque[Turn] = deque()  # steps waiting to decide, in order
        self.working = False  # a step is working through the turns
        self._pass: anyio.Event | None = None  # what the waiting steps wait for

    def open(self, asked: Asked) -> bool:
        """True when a step can decide now, without an ``await``: the store is
        listed, nobody waits to decide, and it need not read its body in turn."""
        return (
            self.done is not None
            and not self.waiting
            and not self.working
            and not (asked.reread and asked.deps)
        )

    def decide_now(self, name: str, asked: Asked) -> tuple[Decision, Flight | None]:
        """Decide, force the dependents of a step that runs, and put a step that
        will await anything in flight: all without an ``await``, so atomically."""
        assert self.done is not None
        decision = decide(
            name, force=asked.force, forced=self.forced, skipped=self.skipped, done=self.done
        )
        if decision.run and asked.deps:
            add(self.forced, asked.deps, f"Dep of {name}")
        flight = None
        if not self.dry_run and (decision.run or (asked.reread and needs_body(decision))):
            flight = self.flights[name] = Flight()
        return decision, flight

    def land(self, name: str, flight: Flight, outcome: StepOutcome | None) -> None:
        """The step in ``flight`` ended: those waiting see how (None: decide again)."""
        del self.flights[name]
        flight.finish(outcome)

    async def wait(self, turn: Turn) -> Decided | None:
        """Queue ``turn`` and wait until it is decided; None when a step of the
        same name went in flight meanwhile (the caller joins it)."""
        self.waiting.append(turn)
        try:
            while turn.pending:
                if not self.working:  # nobody is deciding the queue: this step does
                    await self._work_through(turn)
                    continue
                if self._pass is None:
                    self._pass = anyio.Event()
                await self._pass.wait()
        except BaseException:
            if not turn.pending:  # decided in a pass, then cancelled before it woke
                self._abandon(turn.name, turn.decided)
            raise
        finally:
            if turn.pending:  # cancelled, or its listing failed: out of the queue
                self.waiting.remove(turn)
            if self.waiting and not self.working:
                self._end_pass()  # the steps still waiting go on deciding
        if turn.error is not None:
            raise turn.error
        return turn.decided

    async def _work_through(self, mine: Turn) -> None:
        """Decide every waiting step in submission order, listing the store first
        if nothing is listed yet, and reading the marker body of a step with
        dependents before deciding those after it.

        One step works for all: when the listing ends, every step queued behind
        it is decided in that same pass, and woken together. If this step is
        cancelled or the listing fails, the first step still waiting takes over
        (and lists again). Once its own turn is decided, it leaves the body read
        of a later step to that step.
        """
        self.working = True
        try:
            while self.waiting:
                turn = self.waiting[0]
                if not mine.pending and turn.asked.reread and turn.asked.deps:
                    break  # an await for another step: that step does it
                if self.done is None:
                    self._end_pass()  # the steps decided so far go on meanwhile
                    self.done = set(await turn.store.list_done(self.prefix))
                    logger.debug(
                        "%s: %d steps done under %r",
                        self.workflow_id,
                        len(self.done),
                        self.prefix,
                        extra={"workflow_id": self.workflow_id},
                    )
                    continue
                name, asked = turn.name, turn.asked
                decided, error = None, None
                if name is None or name in self.flights:
                    pass  # it only waited for the listing, or joins the step in flight
                elif not (asked.reread and asked.deps):
                    decision, flight = self.decide_now(name, asked)
                    decided = decision, NOTHING_KEPT, flight
                else:
                    try:
                        decided = await self._decide_with_body(name, asked, turn.store)
                    except Exception as exc:  # its body could not be read: its own failure
                        error = exc
                    if not self.waiting or self.waiting[0] is not turn:
                        # Its step left the queue while its body was read (cancelled).
                        self._abandon(name, decided)
                        continue
                self.waiting.popleft()
                turn.decided, turn.error, turn.pending = decided, error, False
        finally:
            self.working = False
            self._end_pass()

    def _abandon(self, name: str | None, decided: Decided | None) -> None:
        """A decision its step will not act on, as the step was cancelled: its
        flight lands as cancelled, so that later calls of the name decide again."""
        if name is not None and decided is not None and decided[2] is not None:
            self.land(name, decided[2], None)

    def _end_pass(self) -> None:
        """Wake every waiting step: the decided go on, the others look again."""
        if self._pass is not None:
            self._pass.set()
            self._pass = None

    async def _decide_with_body(self, name: str, asked: Asked, store: DoneStore) -> Decided:
        """Decide a waiting step with dependents, reading its body first if needed."""
        # Its dependents must be forced before any step decided after it: its
        # marker's body is read before the steps behind it are decided.
        assert self.done is not None
        assert asked.deps
        decision = decide(
            name, force=asked.force, forced=self.forced, skipped=self.skipped, done=self.done
        )
        kept = NOTHING_KEPT
        if needs_body(decision):
            self._end_pass()  # the steps decided so far go on meanwhile
            decision, kept = await self.reread(name, decision, asked, store)
        if decision.run:
            add(self.forced, asked.deps, f"Dep of {name}")
        flight = None
        if decision.run and not self.dry_run:
            flight = self.flights[name] = Flight()
        return decision, kept, flight

    async def listed(self, store: DoneStore, asked: Asked) -> frozenset[str]:
        """The done set, listed from ``store`` once, in its turn."""
        if self.done is None or self.waiting or self.working:
            await self.wait(Turn(None, asked, store))
        assert self.done is not None
        return frozenset(self.done)

    async def reread(
        self, name: str, decision: Decision, asked: Asked, store: DoneStore
    ) -> tuple[Decision, KeptResult]:
        """Decide a done step again from its marker's body (kept result, version)."""
        try:
            body = await markers_readable(store).read_marker(self.prefix, name)
        except MarkerBodyError as exc:
            return self.reconsider(decision, None, asked, str(exc))
        return self.reconsider(decision, body, asked)

    def reconsider(
        self,
        decision: Decision,
        body: Mapping[str, Any] | None,
        asked: Asked,
        unreadable: str | None = None,
    ) -> tuple[Decision, KeptResult]:
        """Decide a done step again from its marker's ``body``, read by the
        caller: its kept result, and the version that wrote it. ``unreadable``
        says why a body could not be read (then neither is known)."""
        keep = asked.keep
        if unreadable is not None:
            kept = KeptResult(problem=f"result invalid: {unreadable}")
        else:
            kept = decode_result(body, keep) if keep else NOTHING_KEPT
        decision = decide_with_body(
            decision,
            keeps_result=bool(keep),
            result_problem=kept.problem,
            stored_version=(body or {}).get("version"),
            version=self.version,
            rerun_on_new_version=asked.rerun_on_new_version,
            on_missing_result=asked.on_missing,
            unreadable=unreadable,
        )
        return decision, kept


def needs_body(decision: Decision) -> bool:
    """Only a skip because the step is done (no pattern decided it) is
    reconsidered from its marker's body."""
    return not decision.run and not decision.forced


def markers_readable(store: DoneStore) -> ReadsMarkers:
    """``store``, if it can read marker bodies (which ``keep_result`` and
    ``rerun_on_new_version`` need); else :class:`MarkersNotReadable`."""
    if not isinstance(store, ReadsMarkers):
        raise MarkersNotReadable(
            f"{store!r} cannot read marker bodies, which keep_result and "
            "rerun_on_new_version need: give it read_marker(prefix, name), or use "
            "MemoryStore, FileStore or S3Store"
        )
    return store


def add(table: dict[str, list[str]], patterns: Sequence[str], reason: str | None) -> None:
    """Add ``patterns`` to a table of forced or skipped patterns, with ``reason``.

    The table keeps simpleflow's order of reasons: pattern by pattern, in the
    order each pattern was first given a reason, so a pattern added without
    one moves to the end when it gets its first.
    """
    for pattern in patterns:
        reasons = table.setdefault(pattern, [])
        if reason is not None and reason not in reasons:
            if not reasons:
                table[pattern] = table.pop(pattern)
            reasons.append(reason)
