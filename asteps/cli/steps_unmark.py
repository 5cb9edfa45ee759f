"""``asteps steps unmark``: remove done markers, workflow by workflow, naming
what could not be removed."""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import click
from rich.table import Table

from .._concurrency import for_each
from .._names import format_prefix, validate_patterns
from .._telemetry import traced_store
from ..errors import StoreError, StoreUnreachable, UnmarkError
from ..stores import matching
from ..stores.urls import open_store
from ._output import cell
from .app import (
    ERROR_LABEL,
    EXIT_FAILED,
    EXIT_STORE,
    emit_json,
    err,
    guarded,
    json_option,
    log_format_option,
    otel_option,
    out,
    prefix_option,
    run_async,
    store_option,
    tell,
)
from .steps import BULK_CONCURRENCY, done_sets, steps, target_options, targets


@steps.command("unmark")
@target_options
@click.argument("patterns", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@store_option
@prefix_option
@json_option
@otel_option
@log_format_option
def steps_unmark(
    workflow_id: str | None,
    ids_file: IO[bytes] | None,
    patterns: tuple[str, ...],
    yes: bool,
    dry_run: bool,
    store_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """Remove done markers by PATTERN... (hierarchical: 'a' removes a, a.b, a.b.c; not ab).

    Shows what it will remove and asks for confirmation unless --yes. A
    workflow whose markers cannot all be removed does not stop the others:
    each is named at the end, with the markers left (--json: "not_removed"),
    and the exit code is 3. A store that cannot be reached at all (no
    connection) does: the workflows after it are not attempted, and are named
    too (--json: also in "not_attempted").

    \b
    Examples:
      asteps steps unmark --workflow-id customer-42 report --dry-run
      asteps steps unmark --ids customers.txt export --yes
    """
    ids = targets(workflow_id, ids_file, prefix)
    guarded(validate_patterns, patterns)
    found = run_async(_find_matching, ids, patterns, store_url, prefix)
    removable = {wid: names for wid, names in found.items() if names}
    count = sum(len(n) for n in removable.values())
    if not as_json:
        title = cell(f"markers matching {', '.join(patterns)}")
        table = Table(title=title, title_justify="left")
        table.add_column("workflow")
        table.add_column("steps to remove")
        for wid, names in removable.items():
            table.add_row(cell(wid), cell(", ".join(names)))
        out().print(table if removable else "nothing matches")
    if dry_run or not removable:
        if as_json:
            emit_json({"removed": {}, "would_remove": removable})
        return
    if not yes and not click.confirm(
        f"remove {count} marker(s) from {len(removable)} workflow(s)?", err=True
    ):
        err().print("nothing removed")
        sys.exit(EXIT_FAILED)
    failures, not_attempted = run_async(_unmark, removable, store_url, prefix)
    left = {wid: _left(removable[wid], failures[wid]) for wid in removable if wid in failures}
    removed = {
        wid: kept
        for wid, names in removable.items()
        if (kept := [name for name in names if name not in left.get(wid, ())])
    }
    if as_json:
        report: dict[str, Any] = {"removed": removed}
        if left:
            report["not_removed"] = left
        if not_attempted:
            report["not_attempted"] = not_attempted
        emit_json(report)
    else:
        done = sum(len(n) for n in removed.values())
        out().print(f"removed {done} of {count} marker(s)" if left else f"removed {done} marker(s)")
    if left:
        skipped = set(not_attempted)  # one line for them all, however many
        for wid in left:
            if wid not in skipped:
                tell(
                    f"workflow {wid}: {failures[wid]}",
                    logging.ERROR,
                    label=ERROR_LABEL,
                    workflow_id=wid,
                )
        if not_attempted:
            first = ", ".join(not_attempted[:5])
            more = len(not_attempted) - 5
            tell(
                f"{len(not_attempted)} workflow(s) were not attempted, as the store could not "
                f"be reached: {first}"
                + (f" and {more} more (--json lists them all)" if more > 0 else ""),
                logging.ERROR,
                label=ERROR_LABEL,
            )
        summary = (
            f"{sum(len(n) for n in left.values())} marker(s) of {len(left)} workflow(s) "
            "were not removed (each named above)"
        )
        if removed:
            summary += "; the others were"
        tell(summary, logging.ERROR, label=ERROR_LABEL)
        sys.exit(EXIT_STORE)


async def _find_matching(
    ids: list[str], patterns: tuple[str, ...], store_url: str | None, prefix: str
) -> dict[str, list[str]]:
    async with open_store(store_url) as store:
        done = await done_sets(store, ids, prefix)
    return {wid: matching(done[wid], patterns) for wid in ids}


async def _unmark(
    removable: dict[str, list[str]], store_url: str | None, prefix: str
) -> tuple[dict[str, StoreError], list[str]]:
    """Remove the markers of each workflow, whatever happens to the others,
    unless the store cannot be reached (:func:`_unreachable`): then the
    workflows not started yet are not attempted, since each would wait through
    the client's retries to fail the same way (those under way finish).

    The workflows whose markers could not all be removed, with the error (a
    workflow not attempted has one that says so); and those not attempted."""
    failures: dict[str, StoreError] = {}
    not_attempted: list[str] = []
    unreachable: str | None = None  # the first workflow that found the store so

    async def unmark(item: tuple[str, list[str]]) -> None:
        nonlocal unreachable
        wid, names = item
        where = format_prefix(prefix, wid, None)
        if unreachable is not None:
            not_attempted.append(wid)
            failures[wid] = StoreError(
                f"not attempted, as the store could not be reached (see workflow {unreachable})",
                prefix=where,
            )
            return
        try:
            await store.unmark(where, names)
        except StoreError as exc:
            failures[wid] = exc
            if unreachable is None and _unreachable(exc):
                unreachable = wid

    async with open_store(store_url) as opened:
        store = traced_store(opened)
        await for_each(removable.items(), unmark, concurrency=BULK_CONCURRENCY)
    return failures, not_attempted


def _unreachable(failure: StoreError) -> bool:
    """Whether ``failure`` says the store could not be reached at all, by
    itself or as the cause of an unmark that stopped there (S3Store's)."""
    return isinstance(failure, StoreUnreachable) or isinstance(failure.__cause__, StoreUnreachable)


def _left(names: list[str], failure: StoreError) -> list[str]:
    """The markers of ``names`` an unmark that raised ``failure`` may have
    left: those it names, or all of them when it names none."""
    if isinstance(failure, UnmarkError):
        named = set(failure.not_removed)
        return [name for name in names if name in named]
    return names
