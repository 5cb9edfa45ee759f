"""``asteps rerun``: one flow over many workflows, with progress and a summary."""

from __future__ import annotations

import logging
import os
import shlex
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO

import anyio
import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .._batch import (
    BadId,
    BatchRun,
    BatchSummary,
    IdReader,
    WorkflowReport,
    read_ids,
    stream_chunks,
)
from .._flows import check_params, load_flow, parse_params
from .._names import check_prefix_per_workflow, validate_patterns
from .._shards import Shard
from ..stores.discovery import check_discoverable, discover_workflows
from ..stores.urls import open_store
from ._output import cell
from .app import (
    ERROR_LABEL,
    EXIT_FAILED,
    EXIT_STORE,
    EXIT_USAGE,
    Interruption,
    err,
    exclusive_options,
    fail,
    filter_batch_logs,
    finish_batch,
    flow_version_option,
    guarded,
    json_logs,
    json_option,
    log_format_option,
    main,
    otel_option,
    param_option,
    pattern_options,
    prefix_option,
    run_async,
    shard_option,
    store_option,
    tell,
)


@main.command()
@click.argument("flow")
@click.option(
    "--ids",
    "ids_file",
    type=click.File("rb"),
    default=None,
    help="File of workflow ids, one per line ('-' for stdin).",
)
@click.option(
    "--all",
    "all_workflows",
    is_flag=True,
    help="Every workflow that has at least one marker in the store (instead of --ids).",
)
@click.option(
    "--missing",
    multiple=True,
    metavar="PATTERN",
    help="Only the workflows where no done step is covered by PATTERN (repeatable: "
    "missing any of them).",
)
@pattern_options
@flow_version_option
@param_option
@click.option(
    "--concurrency",
    default=32,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Workflows run at once.",
)
@store_option
@prefix_option
@click.option(
    "--failed-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the ids to retry (default: asteps-failed-<time>.txt).",
)
@click.option("--no-progress", is_flag=True, help="No live progress bar on stderr.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Plan every workflow: count what would run or be skipped; run and write nothing.",
)
@shard_option
@exclusive_options
@json_option
@otel_option
@log_format_option
def rerun(
    flow: str,
    ids_file: IO[bytes] | None,
    all_workflows: bool,
    missing: tuple[str, ...],
    force: tuple[str, ...],
    skip: tuple[str, ...],
    reason: str | None,
    flow_version: str | None,
    params: tuple[str, ...],
    concurrency: int,
    store_url: str | None,
    prefix: str,
    failed_file: Path | None,
    no_progress: bool,
    dry_run: bool,
    shard: Shard | None,
    exclusive: bool,
    lease: float,
    as_json: bool,
) -> None:
    """Run FLOW for every workflow id in --ids (or --all), at most --concurrency at once.

    Ids are streamed: a file of 100,000 ids never makes 100,000 tasks, and ids
    from a pipe start as they arrive. --all finds the workflows in the store
    itself (one listing request per 1,000 workflows on S3; the prefix template
    must start with {workflow_id}/). --missing PATTERN keeps only the
    workflows where no done step is covered by the pattern, among --ids or
    --all. Failed workflows' ids are written to a file that --ids takes back
    to retry exactly those. Ctrl-C (or SIGTERM) stops starting workflows,
    cancels those in flight (no step is marked that did not finish) and
    writes the unfinished ids. --exclusive claims each step in the store
    before it runs: two reruns (or a rerun and a worker) over the same ids
    never run a step twice at once. --shard K/N runs only the ids of shard K
    (0-based) of N, from any source: N jobs with K = 0 to N-1 cover each id
    once (with --exclusive, overlapping shards are safe too).

    \b
    Examples:
      asteps rerun examples/export_pipeline.py:flow --ids customers.txt --force export
      cat ids.txt | asteps rerun flows.py:flow --ids - --skip crawl --concurrency 64
      asteps rerun flows.py:flow --ids asteps-failed-20261126-101500.txt
      asteps rerun flows.py:flow --ids customers.txt --force export --dry-run
      asteps rerun flows.py:flow --all --missing export.csv
      asteps rerun flows.py:flow --all --shard $JOB_COMPLETION_INDEX/8 --exclusive
    """
    loaded = guarded(load_flow, flow)
    parsed = guarded(parse_params, params)
    guarded(check_params, loaded, parsed)
    guarded(validate_patterns, [*force, *skip, *missing])
    guarded(check_prefix_per_workflow, prefix)
    if (ids_file is None) == (not all_workflows):
        fail("give exactly one of --ids FILE or --all", EXIT_USAGE)
    if all_workflows:
        guarded(check_discoverable, prefix)
    _check_retry_location(failed_file)
    interruption = Interruption(cancels=False, later="stopping, writing the retry file…")

    async def batch() -> int:
        assert interruption.stop is not None
        reader = None if ids_file is None else IdReader(ids_file, buffer=concurrency * 4)
        total = None
        if ids_file is not None and not missing:  # chosen ones: the total is unknown
            total = await anyio.to_thread.run_sync(_count_ids, ids_file, shard)
        # A progress bar would break the JSON lines on stderr.
        with _progress(total, not (no_progress or json_logs())) as on_workflow:
            async with open_store(store_url) as store:
                run = BatchRun(
                    loaded,
                    store,
                    force=force,
                    skip=skip,
                    reason=reason,
                    params=parsed,
                    concurrency=concurrency,
                    prefix=prefix,
                    dry_run=dry_run,
                    version=flow_version,
                    missing=missing,
                    only_with_markers=all_workflows,
                    on_workflow=on_workflow,
                    exclusive=exclusive,
                    lease=lease,
                    shard=shard,
                )
                if reader is None:
                    ids: IdReader | AsyncIterator[str] = discover_workflows(store, prefix)
                else:
                    reader.start()
                    ids = reader
                summary = await run.run(ids, stop=interruption.stop)
        # Still inside the signal handlers: a signal now cannot cut the report short.
        await _report(summary, failed_file, as_json, getattr(ids_file, "name", None))
        if summary.aborted:
            tell(f"the batch stopped: {summary.aborted}", logging.ERROR, label=ERROR_LABEL)
            return EXIT_STORE
        if summary.unreadable:
            tell(f"the batch stopped: {summary.unreadable}", logging.ERROR, label=ERROR_LABEL)
            return EXIT_FAILED
        if summary.interrupted:
            return interruption.exit_code
        return EXIT_FAILED if summary.failed_ids else 0

    filter_batch_logs()
    sys.exit(run_async(batch, interruption=interruption))


def _check_retry_location(path: Path | None) -> None:
    """The retry file must be writable before anything runs, not after."""
    target = path if path is not None else Path("asteps-failed.txt")
    directory = target.parent
    if target.is_dir():
        problem = "is a directory"
    elif not directory.is_dir():
        problem = f"cannot be created: {str(directory)!r} is not a directory"
    elif not os.access(directory, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        problem = "is not writable"
    else:
        return
    where = f"--failed-file {str(target)!r}" if path is not None else "the working directory"
    fail(
        f"the retry file {problem} ({where}); give a writable --failed-file",
        EXIT_USAGE,
    )


def _count_ids(stream: IO[bytes], shard: Shard | None = None) -> int | None:
    """How many ids a regular file holds (of ``shard``, if given: for the
    ETA), without moving the reader's position; None for a pipe."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    except (OSError, ValueError):
        return None
    ids = read_ids(stream_chunks(stream, offset=offset))
    if shard is None:
        return sum(1 for _ in ids)
    return sum(shard.holds(i.text if isinstance(i, BadId) else i) for i in ids)


@contextmanager
def _progress(
    total: int | None, enabled: bool
) -> Iterator[Callable[[WorkflowReport, BatchSummary], None]]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("workflows"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[steps]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err(),
        disable=not enabled,
    )
    task = progress.add_task("rerun", total=total, steps="", rate="")
    started = time.perf_counter()

    def on_workflow(report: WorkflowReport, summary: BatchSummary) -> None:
        s = summary.steps
        rate = summary.finished / max(time.perf_counter() - started, 1e-9)
        progress.update(
            task,
            advance=1,
            steps=f"steps [green]{s['completed']}[/]/[cyan]{s['skipped']}[/]/[red]{s['failed']}[/]"
            f" (done/skipped/failed), [red]{len(summary.failed_ids)}[/] wf failed",
            rate=f"{rate:,.0f}/s",
        )

    with progress:
        yield on_workflow


async def _report(
    summary: BatchSummary, path: Path | None, as_json: bool, ids_name: object
) -> None:
    """The summary on stdout and the ids to retry in a file; if the file cannot
    be written after all, the ids go to stderr instead."""
    ids = [*summary.failed_ids, *summary.unfinished_ids]
    kind = "unfinished" if summary.stopped else "failed"
    table = partial(_summary_table, summary, ids_name=ids_name)
    await finish_batch(summary.as_dict(), table, ids, path, kind, as_json)


SHOWN_ERRORS = 5
"""The summary table shows the reasons of this many failed workflows."""
SHOWN_ID_WIDTH = 24
"""The width of the summary's first column, where a long id folds."""


def _go_on(stopped_at: str, next_line: int | None, ids_name: object) -> str:
    """Where reading the ids stopped (a batch's or a submit's ``stopped_at``
    and ``next_line``), and how to go on from there."""
    line = next_line
    if line is not None and isinstance(ids_name, str) and not ids_name.startswith("<"):
        return (
            f"at line {line:,} of {ids_name}: the ids from there on are not in the retry "
            f"file; go on with: tail -n +{line} {shlex.quote(ids_name)}"
        )
    if line is not None:
        return f"at line {line:,} of the ids: the ids from there on were not read"
    return f"{stopped_at}: the ids not yet read are not in the retry file"


def _summary_table(
    summary: BatchSummary, retry_file: Path | None, *, ids_name: object = None
) -> Table:
    title = "rerun summary"
    if summary.stopped:
        title = "rerun interrupted"
        if summary.aborted:
            title = "rerun stopped: store failed"
        elif summary.unreadable:
            title = "rerun stopped: ids unreadable"
    table = Table(title=title, title_justify="left", show_header=False)
    # The labels fit in 24 columns; a long workflow id folds within them, so
    # that the reasons beside it keep the rest of the line.
    table.add_column("what", max_width=SHOWN_ID_WIDTH, overflow="fold")
    table.add_column("value")
    if summary.shard is not None:
        table.add_row("shard", f"{summary.shard} ({summary.other_shards:,} ids of other shards)")
    table.add_row("workflows succeeded", str(summary.succeeded))
    table.add_row("workflows failed", f"[red]{len(summary.failed_ids)}[/]")
    if summary.stopped:
        table.add_row("workflows unfinished", f"[yellow]{len(summary.unfinished_ids)}[/]")
    if summary.passed_over:
        table.add_row("workflows not selected", str(summary.passed_over))
    if summary.stopped_at is not None:
        where = _go_on(summary.stopped_at, summary.next_line, ids_name)
        table.add_row("[yellow]reading stopped[/]", cell(where))
    planned = [k for k in ("would run", "would skip") if k in summary.steps]
    for status in planned or ["completed", "skipped", "failed"]:
        count = str(summary.steps[status])
        if status == "would run" and summary.run_reasons:
            count += ": " + ", ".join(f"{r} {n}" for r, n in summary.run_reasons.most_common())
        table.add_row(f"steps {status}", cell(count))
    if summary.steps["retried"]:
        retried = summary.steps["retried"]
        table.add_row(
            "steps retried", cell(f"{retried} ({summary.steps['attempts']} attempts in all)")
        )
    rate = summary.finished / summary.elapsed if summary.elapsed else 0.0
    table.add_row("elapsed", f"{summary.elapsed:.1f} s ({rate:,.0f} workflows/s)")
    for wid, error in list(summary.errors.items())[:SHOWN_ERRORS]:
        if len(wid) > 60:  # a bad line may be 4 KB long: the start says which
            wid = wid[:60] + "..."
        table.add_row(f"[red]{cell(wid)}[/]", cell(error))
    if (hidden := len(summary.errors) - SHOWN_ERRORS) > 0:
        where = "their ids are in the retry file; " if retry_file is not None else ""
        table.add_row(f"[red]and {hidden:,} more failed[/]", f"{where}--json gives every reason")
    if retry_file is not None:
        table.add_row("retry with", f"--ids {cell(str(retry_file))}")
    return table
