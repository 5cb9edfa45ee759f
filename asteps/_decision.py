"""Whether a step runs or is skipped, and why. Pure: no I/O, no state.

The rules, in order (force beats skip):

1. ``force`` or a forced pattern covers the name: run, forced, with the reasons
   of every covering forced pattern;
2. a skipped pattern covers it: skip, forced, with the reasons of every
   covering skipped pattern;
3. it is done: skip, not forced, ``["Step was already played"]``;
4. otherwise: run, not forced, no reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ._names import covers

ALREADY_PLAYED = "Step was already played"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one step."""

    run: bool
    forced: bool
    reasons: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    """The forced or skipped patterns that decided it, for plans and logs."""

    @property
    def action(self) -> Literal["run", "skip"]:
        """``"run"`` or ``"skip"``."""
        return "run" if self.run else "skip"


def decide(
    name: str,
    *,
    force: bool,
    forced: Mapping[str, Sequence[str]],
    skipped: Mapping[str, Sequence[str]],
    done: Collection[str],
) -> Decision:
    """Decide one step. ``forced``/``skipped`` map each pattern to its reasons."""
    if not forced and not skipped:  # the common case: no pattern at all
        return (_DONE if name in done else _NEW) if not force else _FORCED
    patterns, reasons = _covering(name, forced)
    if force or patterns:
        return Decision(run=True, forced=True, reasons=reasons, patterns=patterns)
    patterns, reasons = _covering(name, skipped)
    if patterns:
        return Decision(run=False, forced=True, reasons=reasons, patterns=patterns)
    return _DONE if name in done else _NEW


# Shared instances for the common decisions: frozen, so safe to share, and
# one allocation less per step on the hot path.
_NEW = Decision(run=True, forced=False)
_DONE = Decision(run=False, forced=False, reasons=(ALREADY_PLAYED,))
_FORCED = Decision(run=True, forced=True)


def _covering(
    name: str, table: Mapping[str, Sequence[str]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not table:
        return (), ()
    patterns = tuple(p for p in table if covers(p, name))
    # dict.fromkeys keeps the first occurrence of each reason, in order.
    reasons = tuple(dict.fromkeys(r for p in patterns for r in table[p]))
    return patterns, reasons


RAN_CONCURRENTLY = "Step was run by a concurrent call of this runner"
"""The reason of a step that waited for a call of the same name in flight."""

JOINED = Decision(run=False, forced=False, reasons=(RAN_CONCURRENTLY,))
"""A step that waited for the same name in flight, which completed."""


def played_by(run_id: object) -> Decision:
    """A step whose claim was held by another runner, which marked it done
    (a marker without a run id, as simpleflow writes, names no run)."""
    by = "another run" if run_id is None else f"run {run_id}"
    return Decision(run=False, forced=False, reasons=(f"Step was played by {by}",))


RESULT_KEPT = "result kept"


def decide_with_body(
    decision: Decision,
    *,
    keeps_result: bool,
    result_problem: str | None,
    stored_version: object,
    version: str | None,
    rerun_on_new_version: bool,
    on_missing_result: str,
    unreadable: str | None = None,
) -> Decision:
    """Reconsider a step skipped because it is done, once its marker's body is read.

    1. ``rerun_on_new_version`` and the marker's version differs from the
       runner's: run, forced, ``"version 1 -> 2"`` (a JSON integer is the
       version its digits spell: ``2`` is version ``"2"``); or its body could
       not be read (``unreadable`` says why): run, forced, ``"version
       unreadable -> 2: <why>"``;
    2. its kept result is missing or invalid (``result_problem``), with
       ``on_missing_result="run"``: run, forced, with the problem as reason
       (``"none"`` and ``"error"`` keep the skip and add the problem as reason;
       the runner fails the step for ``"error"``);
    3. otherwise the skip stands, with ``"result kept"`` added when it keeps one.

    Only for a decision ``skip`` that no pattern made (``forced`` is False).
    """
    if rerun_on_new_version and unreadable is not None:
        reason = f"version unreadable -> {version}: {unreadable}"
        return Decision(run=True, forced=True, reasons=(reason,))
    if rerun_on_new_version and not _same_version(stored_version, version):
        shown = _shown_version(stored_version)
        return Decision(run=True, forced=True, reasons=(f"version {shown} -> {version}",))
    if not keeps_result:
        return decision
    if result_problem is None:
        return Decision(run=False, forced=False, reasons=(*decision.reasons, RESULT_KEPT))
    if on_missing_result == "run":
        return Decision(run=True, forced=True, reasons=(result_problem,))
    return Decision(run=False, forced=False, reasons=(*decision.reasons, result_problem))


def _same_version(stored: object, version: str | None) -> bool:
    """Whether a marker's version is the runner's: equal, or a JSON integer
    whose digits spell it (another writer may store ``2`` for ``"2"``)."""
    if stored == version:
        return True
    return type(stored) is int and version is not None and str(stored) == version


_MAX_VERSION_SHOWN = 64


def _shown_version(value: object) -> str:
    """A marker's version in a reason: the body is anyone's, so it is cut short."""
    text = str(value)
    if len(text) <= _MAX_VERSION_SHOWN:
        return text
    return f"{text[:_MAX_VERSION_SHOWN]}... ({len(text):,} characters)"
