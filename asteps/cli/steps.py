"""``asteps steps list|mark|unmark``: inspect and edit done markers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import IO, Any

import click
from rich.table import Table

from .._concurrency import for_each
from .._ids import BadId, numbered_ids
from .._names import (
    check_prefix_per_workflow,
    format_prefix,
    validate_name,
    validate_patterns,
    validate_workflow_id,
)
from .._telemetry import traced_store
from ..errors import InvalidName, MarkerBodyError, StoreError, StoreUnreachable, UnmarkError
from ..stores import DoneStore, ReadsMarkers, list_done_many, matching
from ..stores.discovery import check_discoverable, discover_workflows
from ..stores.urls import default_store_url, open_store
from ._output import cell, printable
from .app import (
    ERROR_LABEL,
    EXIT_FAILED,
    EXIT_STORE,
    EXIT_USAGE,
    emit_json,
    err,
    fail,
    guarded,
    json_option,
    log_format_option,
    main,
    otel_option,
    out,
    prefix_option,
    run_async,
    store_option,
    tell,
)

MANUAL_RUN_ID = "asteps-cli"
BULK_CONCURRENCY = 32  # store requests in flight for steps list/mark/unmark


@main.group()
def steps() -> None:
    """Inspect and edit the done markers of workflows."""


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--ids",
        "ids_file",
        type=click.File("rb"),
        default=None,
        help="File of workflow ids ('-' for stdin).",
    )(fn)
    fn = click.option("--workflow-id", default=None, help="One workflow.")(fn)
    return fn


def _targets(workflow_id: str | None, ids_file: IO[bytes] | None, prefix: str) -> list[str]:
    """The workflows named, every id and its prefix validated before any I/O;
    a bad line of an ids file is named by its number."""
    if workflow_id is not None and ids_file is None:
        guarded(validate_workflow_id, workflow_id)
        guarded(format_prefix, prefix, workflow_id, None)
        return [workflow_id]
    if ids_file is None or workflow_id is not None:
        fail("give exactly one of --workflow-id or --ids", EXIT_USAGE)
    guarded(check_prefix_per_workflow, prefix)
    ids: dict[str, None] = {}  # in order, each once
    for line, item in numbered_ids(ids_file):
        if isinstance(item, BadId):  # its reason names the line
            fail(f"--ids: {item.reason}: '{printable(item.text)}'", EXIT_USAGE)
        try:
            validate_workflow_id(item)
            format_prefix(prefix, item, None)
        except InvalidName as exc:
            fail(f"--ids: line {line:,}: {exc}", EXIT_USAGE)
        ids[item] = None
    return list(ids)


async def _done_sets(store: DoneStore, ids: list[str], prefix: str) -> dict[str, set[str]]:
    prefixes = {format_prefix(prefix, wid, None): wid for wid in ids}
    listed = await list_done_many(store, prefixes, concurrency=BULK_CONCURRENCY)
    return {prefixes[p]: set(names) for p, names in listed.items()}


VERSIONS_ASK_ABOVE = 1000
"""``steps list --versions`` asks before reading more marker bodies than this."""


@steps.command("list")
@target_options
@click.option(
    "--all",
    "all_workflows",
    is_flag=True,
    help="Every workflow that has at least one marker in the store.",
)
@click.option(
    "--versions",
    is_flag=True,
    help="Also each done step's version and run id (reads every marker's body: "
    "one request each on S3).",
)
@click.option(
    "--yes", is_flag=True, help=f"Read over {VERSIONS_ASK_ABOVE:,} bodies without asking."
)
@store_option
@prefix_option
@json_option
@otel_option
@log_format_option
def steps_list(
    workflow_id: str | None,
    ids_file: IO[bytes] | None,
    all_workflows: bool,
    versions: bool,
    yes: bool,
    store_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """List the done steps of workflows.

    --all finds the workflows in the store itself (the prefix template must
    start with {workflow_id}/). --versions reads each marker's body and shows
    the version and run id that wrote it; for more than 1,000 markers it says
    how many requests that makes and asks first, unless --yes.

    \b
    Examples:
      asteps steps list --workflow-id customer-42
      asteps steps list --ids customers.txt --json
      asteps steps list --all
      asteps steps list --workflow-id customer-42 --versions
    """
    if all_workflows:
        if workflow_id is not None or ids_file is not None:
            fail("give exactly one of --workflow-id, --ids or --all", EXIT_USAGE)
        guarded(check_discoverable, prefix)
        ids = None
    else:
        ids = _targets(workflow_id, ids_file, prefix)
    done = run_async(_list_steps, ids, store_url, prefix)
    if not versions:
        if as_json:
            emit_json({wid: sorted(names) for wid, names in done.items()})
            return
        table = Table(title=cell(f"done steps ({_store_label(store_url)})"), title_justify="left")
        table.add_column("workflow")
        table.add_column("done", justify="right")
        table.add_column("steps")
        for wid, names in done.items():
            table.add_row(cell(wid), str(len(names)), cell(", ".join(sorted(names))))
        out().print(table)
        return
    count = sum(len(names) for names in done.values())
    if count > VERSIONS_ASK_ABOVE and not yes:
        question = (
            f"reading the versions of {count:,} markers makes {count:,} requests to the store "
            "(one GetObject each on S3); go on?"
        )
        if not click.confirm(question, err=True):
            err().print("nothing read")
            sys.exit(EXIT_FAILED)
    bodies = run_async(_read_versions, done, store_url, prefix)
    if as_json:
        emit_json(bodies)
        return
    table = Table(title=cell(f"done steps ({_store_label(store_url)})"), title_justify="left")
    for column in ("workflow", "step", "version", "run id"):
        table.add_column(column)
    unreadable = 0
    for wid, steps_of in bodies.items():
        for name, body in steps_of.items():
            version, run_id = body["version"], body["run_id"]
            if "error" in body:
                unreadable += 1
                version = "(unreadable body)"
            table.add_row(
                cell(wid),
                cell(name),
                "" if version is None else cell(str(version)),
                cell(str(run_id)) if run_id is not None else "",
            )
    out().print(table)
    if unreadable:
        bodies_read = "marker body" if unreadable == 1 else "marker bodies"
        err().print(f"{unreadable:,} {bodies_read} could not be read: --json says why")


async def _list_steps(
    ids: list[str] | None, store_url: str | None, prefix: str
) -> dict[str, set[str]]:
    """The done sets of ``ids``, or of every workflow with a marker (``None``)."""
    async with open_store(store_url) as store:
        if ids is not None:
            return await _done_sets(store, ids, prefix)
        found = sorted([wid async for wid in discover_workflows(store, prefix)])
        done = await _done_sets(store, found, prefix)
        # A directory without a marker (left by an unmark on disk) is no workflow here.
        return {wid: names for wid, names in done.items() if names}


async def _read_versions(
    done: dict[str, set[str]], store_url: str | None, prefix: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """Each done step's version and run id, read from its marker's body."""
    bodies: dict[str, dict[str, dict[str, Any]]] = {
        wid: {name: {"version": None, "run_id": None} for name in sorted(names)}
        for wid, names in done.items()
    }

    async with open_store(store_url) as opened:
        store = traced_store(opened)
        if not isinstance(store, ReadsMarkers):
            raise StoreError(f"{store!r} cannot read marker bodies (it has no read_marker)")

        async def read(pair: tuple[str, str]) -> None:
            wid, name = pair
            try:
                body = await store.read_marker(format_prefix(prefix, wid, None), name)
            except MarkerBodyError as exc:
                bodies[wid][name] = {"version": None, "run_id": None, "error": str(exc)}
                return
            if body is not None:
                bodies[wid][name] = {"version": body.get("version"), "run_id": body.get("run_id")}

        pairs = ((wid, name) for wid, names in bodies.items() for name in names)
        await for_each(pairs, read, concurrency=BULK_CONCURRENCY)
    return bodies


@steps.command("mark")
@target_options
@click.argument("names", nargs=-1, required=True)
@store_option
@prefix_option
@json_option
@otel_option
@log_format_option
def steps_mark(
    workflow_id: str | None,
    ids_file: IO[bytes] | None,
    names: tuple[str, ...],
    store_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """Mark steps NAME... done, so that later runs skip them.

    \b
    Examples:
      asteps steps mark --workflow-id customer-42 crawl crawl.pages
    """
    ids = _targets(workflow_id, ids_file, prefix)
    for name in names:
        guarded(validate_name, name)
    run_async(_mark, ids, names, store_url, prefix)
    if as_json:
        emit_json({"marked": {wid: list(names) for wid in ids}})
    else:
        out().print(f"marked {len(names)} step(s) done in {len(ids)} workflow(s)")


async def _mark(ids: list[str], names: tuple[str, ...], store_url: str | None, prefix: str) -> None:
    async def mark(pair: tuple[str, str]) -> None:
        wid, name = pair
        body = {"run_id": MANUAL_RUN_ID, "workflow_id": wid, "version": None}
        await store.mark_done(format_prefix(prefix, wid, None), name, body)

    async with open_store(store_url) as opened:
        store = traced_store(opened)
        pairs = ((wid, name) for wid in ids for name in names)
        await for_each(pairs, mark, concurrency=BULK_CONCURRENCY)


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
    ids = _targets(workflow_id, ids_file, prefix)
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
        done = await _done_sets(store, ids, prefix)
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


def _store_label(store_url: str | None) -> str:
    return store_url or default_store_url()
