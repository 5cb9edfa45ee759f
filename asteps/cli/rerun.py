"""``asteps rerun``: one flow over many workflows, with progress and a summary."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

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

from .. import BatchRun, BatchSummary, Shard, WorkflowReport
from .._flows import check_params, load_flow, parse_params
from .._ids import ChainedIds, DiscoveredIds, IdReader, IdSource
from .._names import check_prefix_per_workflow, validate_patterns
from ..errors import StoreError
from ..stores.discovery import check_discoverable, discover_workflows
from ..stores.urls import default_store_url, open_store, parse_store_url
from ._batch_io import (
    RetryFile,
    check_retry_location,
    count_ids,
    go_on,
    read_resume,
    retire_resume,
    save_resume,
    source_of,
)
from ._output import cell
from .app import (
    ERROR_LABEL,
    EXIT_FAILED,
    EXIT_STORE,
    EXIT_USAGE,
    Interruption,
    emit_json,
    err,
    exclusive_options,
    fail,
    filter_batch_logs,
    flow_version_option,
    guarded,
    json_logs,
    json_option,
    log_format_option,
    main,
    otel_option,
    out,
    param_option,
    pattern_options,
    prefix_option,
    run_async,
    shard_option,
    store_option,
    tell,
)

T = TypeVar("T")


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
    help="Where to write the ids to retry (default: asteps-failed-<time>-<pid>.txt).",
)
@click.option(
    "--resume",
    "resume_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Go on from the resume point a stopped rerun wrote (give the same --ids or "
    "--all, --store, --prefix and --shard). Used up, the file is removed once this run "
    "goes on to the end, or stops and writes its own point.",
)
@click.option("--no-progress", is_flag=True, help="No live progress bar on stderr.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Plan every workflow: count what would run or be skipped; run nothing and write "
    "no marker (the retry file, and when stopped the unfinished and resume files, are "
    "still written).",
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
    resume_file: Path | None,
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
    writes the unfinished ids, with a resume point that --resume goes on
    from (the ids in flight first, then the ids file from the line it had
    reached, or the store's listing after the last workflow listed).
    --exclusive claims each step in the store before it runs: two reruns (or
    a rerun and a worker) over the same ids never run a step twice at once.
    --shard K/N runs only the ids of shard K (0-based) of N, from any
    source: N jobs with K = 0 to N-1 cover each id once (with --exclusive,
    overlapping shards are safe too).

    \b
    Examples:
      asteps rerun examples/export_pipeline.py:flow --ids customers.txt --force export
      cat ids.txt | asteps rerun flows.py:flow --ids - --skip crawl --concurrency 64
      asteps rerun flows.py:flow --ids asteps-failed-20261126-101500-4242.txt
      asteps rerun flows.py:flow --ids customers.txt --force export --dry-run
      asteps rerun flows.py:flow --all --missing export.csv
      asteps rerun flows.py:flow --all --shard $JOB_COMPLETION_INDEX/8 --exclusive
      asteps rerun flows.py:flow --all --resume asteps-resume-20261126-101500-4242.json
    """
    loaded = guarded(load_flow, flow)
    parsed = guarded(parse_params, params)
    guarded(check_params, loaded, parsed)
    guarded(validate_patterns, [*force, *skip, *missing])
    guarded(check_prefix_per_workflow, prefix)
    try:  # checked now, not when the store opens: after counting the ids
        parse_store_url(store_url or default_store_url())
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    if (ids_file is None) == (not all_workflows):
        fail("give exactly one of --ids FILE or --all", EXIT_USAGE)
    if all_workflows:
        guarded(check_discoverable, prefix)
    check_retry_location(failed_file, ids_file)
    source = source_of(ids_file, store_url, prefix, shard, dry_run=dry_run)
    point = None if resume_file is None else read_resume(resume_file, source)
    interruption = Interruption(cancels=False, later="stopping, writing the retry file…")

    async def batch() -> int:
        assert interruption.stop is not None
        start_line = 1 if point is None or point.next_line is None else point.next_line
        reader = None
        if ids_file is not None and (point is None or not point.over):
            reader = IdReader(ids_file, buffer=concurrency * 4, start_line=start_line)
        total = None
        show_progress = not (no_progress or json_logs())
        # Counted for the progress bar alone (with --missing, chosen ones: the
        # total is unknown). A Ctrl-C during the count does not wait for it.
        if show_progress and ids_file is not None and reader is not None and not missing:
            count = partial(count_ids, ids_file, shard, start_line=start_line)
            total = await unless_stopped(count, interruption.stop)
            if total is not None and point is not None:
                total += len(point.unfinished)
        retry = RetryFile(failed_file, append=point is not None)  # the resumed run's kept
        summary: BatchSummary | None = None
        try:
            with _progress(total, show_progress) as show:

                def on_report(report: WorkflowReport, summary: BatchSummary) -> None:
                    if not report.ok:
                        retry.add(report.workflow_id)  # streamed as it fails
                    show(summary)

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
                        on_workflow=on_report,
                        exclusive=exclusive,
                        lease=lease,
                        shard=shard,
                    )
                    ids: IdSource
                    if point is not None and point.over:
                        ids = ChainedIds(point.unfinished)  # every id was read: these only
                    elif reader is None:
                        after = None if point is None else point.listed_to
                        listing = discover_workflows(store, prefix, start_after=after)
                        ids = DiscoveredIds(listing, start_after=after)
                    else:
                        ids = reader  # read from its first id: after the unfinished ones
                    if point is not None and not point.over:
                        ids = ChainedIds(point.unfinished, ids)
                    summary = await run.run(ids, stop=interruption.stop)
                show(summary)  # the ids passed over after the last workflow, too
            for wid in summary.unfinished_ids:
                retry.add(wid)
        finally:
            # Still inside the signal handlers: a signal now cannot cut the report short.
            stopped = summary is None or summary.stopped
            written = await anyio.to_thread.run_sync(partial(retry.close, stopped=stopped))
        resumed_at = None
        if summary.stopped:
            resumed_at = await save_resume(summary, source, point, failed_file)
        if resume_file is not None and (resumed_at is not None or not summary.stopped):
            # Used up; kept only if its replacement could not be written.
            await retire_resume(resume_file, resumed_at)
        _report(summary, retry, written, resumed_at, as_json, getattr(ids_file, "name", None))
        if summary.aborted:
            tell(f"the batch stopped: {summary.aborted}", logging.ERROR, label=ERROR_LABEL)
            return EXIT_STORE
        if summary.unreadable:
            tell(f"the batch stopped: {summary.unreadable}", logging.ERROR, label=ERROR_LABEL)
            return EXIT_FAILED
        if summary.interrupted:
            return interruption.exit_code
        return EXIT_FAILED if summary.failed else 0

    filter_batch_logs()
    sys.exit(run_async(batch, interruption=interruption))


async def unless_stopped(work: Callable[[], T], stop: anyio.Event) -> T | None:
    """``work()`` run in a thread; or None at once when ``stop`` is set (or the
    caller is cancelled) before it ends, ``work`` left to finish unwatched.

    Its thread is a daemon: abandoned, it never holds the process's exit (an
    anyio worker thread would, and ``to_thread.run_sync`` waits for it unless
    told to abandon it). The worker thread used here to wait only waits for
    ``finished``, which a stop sets too, so it returns at once either way.
    """
    finished = threading.Event()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller, if it still waits
            failure.append(exc)
        finally:
            finished.set()

    threading.Thread(target=target, name="asteps count ids", daemon=True).start()

    async def on_stop() -> None:
        await stop.wait()
        finished.set()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(on_stop)
            await anyio.to_thread.run_sync(finished.wait, abandon_on_cancel=True)
            tasks.cancel_scope.cancel()
    finally:
        finished.set()  # a cancelled wait: its worker thread returns too
    if failure:
        raise failure[0]
    return outcome[0] if outcome else None


@contextmanager
def _progress(total: int | None, enabled: bool) -> Iterator[Callable[[BatchSummary], None]]:
    """A live progress bar, and the function that shows a summary on it: the
    ids dealt with (workflows finished, passed over, repeated) of ``total``."""
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

    def show(summary: BatchSummary) -> None:
        s = summary.steps
        rate = summary.finished / max(time.perf_counter() - started, 1e-9)
        progress.update(
            task,
            completed=summary.finished + summary.passed_over + summary.repeated,
            steps=f"steps [green]{s['completed']}[/]/[cyan]{s['skipped']}[/]/[red]{s['failed']}[/]"
            f" (done/skipped/failed), [red]{len(summary.failed_ids)}[/] wf failed",
            rate=f"{rate:,.0f}/s",
        )

    with progress:
        yield show


def _report(
    summary: BatchSummary,
    retry: RetryFile,
    written: Path | None,
    resume: Path | None,
    as_json: bool,
    ids_name: object,
) -> None:
    """The summary on stdout; if the retry file could not be written, its ids on stderr."""
    if as_json:
        emit_json(
            {
                **summary.as_dict(),
                "retry_file": str(written) if written else None,
                "resume_file": str(resume) if resume else None,
            }
        )
    else:
        out().print(_summary_table(summary, written, ids_name=ids_name, resume=resume))
    retry.report()


SHOWN_ERRORS = 5
"""The summary table shows the reasons of this many failed workflows."""
SHOWN_ID_WIDTH = 24
"""The width of the summary's first column, where a long id folds."""


def _summary_table(
    summary: BatchSummary,
    retry_file: Path | None,
    *,
    ids_name: object = None,
    resume: Path | None = None,
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
    table.add_row("workflows failed", f"[red]{summary.failed}[/]")
    if summary.stopped:
        table.add_row("workflows unfinished", f"[yellow]{len(summary.unfinished_ids)}[/]")
    if summary.passed_over:
        table.add_row("workflows not selected", str(summary.passed_over))
    if summary.repeated:
        table.add_row("repeated ids", f"{summary.repeated:,} (each run once at a time)")
    if summary.stopped_at is not None:
        where = go_on(summary.stopped_at, summary.next_line, ids_name)
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
    if (hidden := summary.failed - min(len(summary.errors), SHOWN_ERRORS)) > 0:
        where = "their ids are in the retry file; " if retry_file is not None else ""
        kept = len(summary.errors)  # the batch keeps the first KEPT_FAILURES reasons
        reasons = "every reason" if kept >= summary.failed else f"the first {kept:,} reasons"
        table.add_row(f"[red]and {hidden:,} more failed[/]", f"{where}--json gives {reasons}")
    if retry_file is not None:
        table.add_row("retry with", f"--ids {cell(str(retry_file))}")
    if resume is not None:
        table.add_row("go on with", f"--resume {cell(str(resume))} (and the same source)")
    return table
