"""How outcomes and signals look in a terminal (rich) and as JSON."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .._bus import Signal
from .._decision import ALREADY_PLAYED
from .._step import StepOutcome
from ..errors import describe

# Control and format characters, line and paragraph separators, lone
# surrogates: what could move the cursor, recolour or reorder a terminal.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def emit_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (``--json``)."""
    click.echo(json.dumps(data, indent=2, default=str))


def printable(text: str) -> str:
    """``text`` with every character that could act on a terminal written as
    an escape (``\\x1b``, ``\\x00``, ``\\u202e``); anything from input is shown
    through this. A byte that was not UTF-8 (kept by Python as a lone
    surrogate, U+DC80 to U+DCFF) is shown as that byte, ``\\xff``; a
    character from U+0080 on as ``\\u0085``, so that the two never look alike."""
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(_escaped(c) if unicodedata.category(c) in _UNSAFE else c for c in text)


def cell(text: str) -> str:
    """Input text for a rich table or message: :func:`printable`, markup escaped."""
    return escape(printable(text))


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept as Python keeps
        return f"\\x{code - 0xDC00:02x}"  # it (surrogateescape): shown as that byte
    # \xNN only below 0x80, so that it always names a byte: C1 controls are \u0085
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


_STYLE = {"completed": "green", "skipped": "cyan", "failed": "bold red", "planned": "yellow"}


def outcome_row(outcome: StepOutcome) -> dict[str, Any]:
    """One outcome as plain JSON-able data."""
    row: dict[str, Any] = {
        "step": outcome.name,
        "status": outcome.status,
        "decision": outcome.decision,
        "forced": outcome.forced,
        "reasons": outcome.reasons,
        "patterns": list(outcome.patterns),
        "duration": round(outcome.duration, 6),
        "attempts": outcome.attempts,
    }
    if outcome.error is not None:
        row["error"] = describe(outcome.error)
    return row


def outcomes_table(outcomes: Iterable[StepOutcome], *, title: str | None = None) -> Table:
    """Step, status (with the attempts of a retried step), forced, reasons (and
    the deciding patterns, when any), duration."""
    rows = list(outcomes)
    with_patterns = any(o.patterns for o in rows)
    table = Table(title=title, title_justify="left")
    table.add_column("step", no_wrap=True)
    for column in ("status", "forced", "reasons"):
        table.add_column(column)
    if with_patterns:
        table.add_column("pattern")
    table.add_column("duration", justify="right")
    for o in rows:
        why = "; ".join(o.reasons)
        if o.error is not None:
            why = describe(o.error)
        cells = [
            cell(o.name),
            f"[{_STYLE[o.status]}]{o.shown_status}[/]{_attempts(o)}",
            "yes" if o.forced else "",
            cell(why),
        ]
        if with_patterns:
            cells.append(cell(", ".join(o.patterns)))
        cells.append(f"{o.duration * 1000:.1f} ms" if o.status != "planned" else "")
        table.add_row(*cells)
    return table


def _attempts(outcome: StepOutcome) -> str:
    """How many attempts a retried step took, for its status cell; nothing for 1."""
    return f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""


def why(outcome: StepOutcome) -> str:
    """Why a step runs or is skipped, in words: the pattern and reason, "already
    done" (with "(result kept)" when its result comes back), or what its
    marker's body said ("result missing", "version 1 -> 2")."""
    reasons = "; ".join(outcome.reasons)
    if outcome.patterns:
        verb = "forced by" if outcome.decision == "run" else "skipped by"
        return f"{verb} {', '.join(outcome.patterns)}" + (f": {reasons}" if reasons else "")
    if outcome.decision == "skip":
        more = [r for r in outcome.reasons if r != ALREADY_PLAYED]
        return "already done" + (f" ({'; '.join(more)})" if more else "")
    if outcome.reasons:  # done, but its marker's body says run again
        return reasons
    if outcome.forced:
        return "forced by the flow (force=True)"
    return "not done yet"


def plan_table(outcomes: Iterable[StepOutcome], *, title: str | None = None) -> Table:
    """A dry run: each step, what would happen, and why."""
    table = Table(title=title, title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("would", no_wrap=True)
    table.add_column("why")
    for o in outcomes:
        style = "yellow" if o.decision == "run" else "cyan"
        table.add_row(cell(o.name), f"[{style}]{o.shown_status}[/]", cell(why(o)))
    return table


def signals_table(signals: Iterable[Signal]) -> Table:
    """Signals, with the step payload's fields in columns when it has them."""
    table = Table(title="signals received", title_justify="left")
    table.add_column("signal")
    table.add_column("status")
    table.add_column("forced")
    table.add_column("reasons / payload")
    for s in signals:
        p = s.payload
        if isinstance(p, dict) and {"status", "forced", "reasons"} <= p.keys():
            table.add_row(
                cell(s.name),
                p["status"],
                "yes" if p["forced"] else "",
                cell("; ".join(p["reasons"])),
            )
        else:
            table.add_row(cell(s.name), "", "", cell(json.dumps(p, sort_keys=True, default=str)))
    return table
