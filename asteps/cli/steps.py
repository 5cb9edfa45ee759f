"""``asteps steps list|mark``: inspect and edit done markers (``unmark`` is in
``steps_unmark``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any

import click
from rich.table import Table

from .._concurrency import for_each
from .._ids import BadId, numbered_ids, stream_chunks
from .._names import (
    MAX_SHOWN,
    check_prefix_per_workflow,
    format_prefix,
    validate_name,
    validate_workflow_id,
)
from .._telemetry import traced_store
from ..errors import InvalidName, MarkerBodyError, StoreError
from ..stores import DoneStore, ReadsMarkers, list_done_many
from ..stores.discovery import check_discoverable, discover_workflows
from ..stores.urls import default_store_url, open_store
from ._output import cell, printable
from .app import (
    EXIT_FAILED,
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


def targets(workflow_id: str | None, ids_file: IO[bytes] | None, prefix: str) -> list[str]:
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
    for line, item in numbered_ids(stream_chunks(ids_file)):
        if isinstance(item, BadId):  # its reason names the line; its start is quoted
            text = item.text if len(item.text) <= MAX_SHOWN else item.text[:MAX_SHOWN] + "…"
            fail(f"--ids: {item.reason}: '{printable(text)}'", EXIT_USAGE)
        try:
            validate_workflow_id(item)
            format_prefix(prefix, item, None)
        except InvalidName as exc:
            fail(f"--ids: line {line:,}: {exc}", EXIT_USAGE)
        ids[item] = None
    return list(ids)


async def done_sets(store: DoneStore, ids: list[str], prefix: str) -> dict[str, set[str]]:
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
        ids = targets(workflow_id, ids_file, prefix)
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
            return await done_sets(store, ids, prefix)
        found = sorted([wid async for wid in discover_workflows(store, prefix)])
        done = await done_sets(store, found, prefix)
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
    ids = targets(workflow_id, ids_file, prefix)
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


def _store_label(store_url: str | None) -> str:
    return store_url or default_store_url()
