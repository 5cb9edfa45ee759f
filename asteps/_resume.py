"""Resume points: where a stopped batch goes on from (``asteps rerun --resume FILE``).

A resume point is JSON, written when a batch stops: the ids read and not
finished (in flight, or read ahead), and where reading stopped (an ids
file's line to go on from, or the last workflow the store's listing gave).
It also records what it was written for: the kind of source, the ids file's
name and size, or the store and the prefix template, and the shard.

Read back, it is untrusted input: a strict model (unknown fields refused,
no value coerced to another type, sizes bounded, a version), whose ids
are checked as any id is. It never chooses a path, a store or an
endpoint: the operator gives the flow and the source again, and
:meth:`ResumePoint.check` refuses one that differs from what the point was
written for, naming the difference.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from ._names import MAX_WORKFLOW_ID_BYTES, validate_workflow_id

MAX_RESUME_BYTES = 16 * 1024 * 1024
"""The largest resume file read back."""
MAX_RESUME_IDS = 200_000
"""The most unfinished ids a resume point holds (a stop leaves at most a few
times the concurrency, plus the reader's buffer)."""

SourceKind = Literal["file", "stdin", "all"]
_Text = Annotated[str, StringConstraints(max_length=4096)]


class ResumeError(ValueError):
    """A resume file that cannot be read, or was written for another source."""


class ResumeSource(BaseModel):
    """What a resume point was written for; ``--resume`` needs the same."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: SourceKind
    dry_run: bool
    """Whether the batch only planned (``--dry-run``): the ids it read did not
    run, so a real run cannot go on from it (nor a dry run from a real one)."""
    ids_file: _Text | None = None
    """The ids file as given (``--ids``), for a file."""
    ids_size: int | None = Field(default=None, ge=0)
    """Its size in bytes, for a file: a file changed since is refused."""
    store: _Text | None = None
    """The store URL as given (``--store`` or ``ASTEPS_STORE``), for every
    kind: the ids read ran on that store, not on another."""
    prefix: _Text
    shard: Annotated[str, StringConstraints(max_length=16)] | None = None


class ResumePoint(BaseModel):
    """Where a stopped batch goes on from (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[1] = 1
    source: ResumeSource
    unfinished: list[str] = Field(default_factory=list, max_length=MAX_RESUME_IDS)
    """The ids read and not finished: run first when going on."""
    next_line: int | None = Field(default=None, ge=1)
    """An ids file's line to go on from; None when every line was read."""
    listed_to: Annotated[str, StringConstraints(max_length=MAX_WORKFLOW_ID_BYTES)] | None = None
    """The last workflow of the store's listing; the listing goes on after it."""
    over: bool = False
    """Whether every id of the source was read: going on runs ``unfinished`` only."""

    @field_validator("unfinished")
    @classmethod
    def _ids_are_ids(cls, ids: list[str]) -> list[str]:
        for wid in ids:
            validate_workflow_id(wid)
        return ids

    @field_validator("listed_to")
    @classmethod
    def _listed_is_an_id(cls, wid: str | None) -> str | None:
        return None if wid is None else validate_workflow_id(wid)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> ResumePoint:
        """The resume point in ``data`` (the file ``where``); :class:`ResumeError` if bad."""
        if len(data) > MAX_RESUME_BYTES:
            raise ResumeError(f"{where} is over {MAX_RESUME_BYTES:,} bytes: not a resume file")
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            earlier = first["type"] == "missing" and tuple(first["loc"]) == ("source", "dry_run")
            if earlier and exc.error_count() == 1:
                raise ResumeError(_earlier(data, where)) from None
            at = ".".join(str(p) for p in first["loc"]) or "the file"
            raise ResumeError(
                f"{where} is not a resume file asteps wrote ({at}: {first['msg']}; "
                f"{exc.error_count()} problem(s)): give the file a stopped rerun wrote"
            ) from None

    def check(self, source: ResumeSource) -> None:
        """Refuse to go on from here with another source than the one written for."""
        mine = self.source
        if mine.dry_run and not source.dry_run:
            raise ResumeError(
                "the resume point was written by a --dry-run: the ids it read were only "
                "planned, not run; go on with --dry-run, or rerun without --resume"
            )
        if source.dry_run and not mine.dry_run:
            raise ResumeError(
                "the resume point was written by a real run, not a --dry-run: go on "
                "without --dry-run, or plan without --resume"
            )
        for name, label in _LABELS.items():
            want, got = getattr(mine, name), getattr(source, name)
            if want != got:
                raise ResumeError(
                    f"the resume point was written for {label} {want!r}, not {got!r}: give "
                    "the same source (and --store, --prefix, --shard) as the stopped rerun"
                )


def _earlier(data: bytes, where: str) -> str:
    """Why a point of an earlier asteps (no ``dry_run``, no store for an ids
    file) is refused, and how to go on by hand from its line, if it says one."""
    try:  # the model parsed it, and found only this field missing
        parsed = json.loads(data)
        found, unfinished = parsed.get("next_line"), list(parsed.get("unfinished", []))
    except (ValueError, AttributeError, TypeError):
        found, unfinished = None, []
    line = found if type(found) is int and found >= 1 else None
    by_hand = "rerun without --resume (done steps are skipped)"
    if line is not None:
        by_hand += (
            f", or by hand: its {len(unfinished):,} unfinished ids (read before that "
            f"line, not finished), then the ids from line {line} on (tail -n +{line} IDS)"
        )
    return (
        f"{where} was written by an earlier asteps, which did not record whether it "
        "was a dry run, nor the store of an ids file: it cannot be checked, so it is "
        f"refused; {by_hand}"
    )


_LABELS = {
    "kind": "a source of kind",
    "ids_file": "--ids",
    "ids_size": "an ids file of size",
    "store": "the store",
    "prefix": "the prefix template",
    "shard": "the shard",
}
