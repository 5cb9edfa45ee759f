"""``asteps rerun``: one flow over many workflows, with progress and a summary."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import anyio
import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .._batch import BatchRun, BatchSummary, WorkflowReport, read_ids
from .._flows import load_flow, parse_params
from .._names import validate_patterns
from ..stores.urls import open_store
from .app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_STORE,
    emit_json,
    err,
    fail,
    guarded,
    json_option,
    main,
    out,
    param_option,
    pattern_options,
    prefix_option,
    run_async,
    store_option,
)


@main.command()
@click.argument("flow")
@click.option(
    "--ids",
    "ids_file",
    required=True,
    type=click.File("r"),
    help="File of workflow ids, one per line ('-' for stdin).",
)
@pattern_options
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
@json_option
def rerun(
    flow: str,
    ids_file: IO[str],
    force: tuple[str, ...],
    skip: tuple[str, ...],
    reason: str | None,
    params: tuple[str, ...],
    concurrency: int,
    store_url: str | None,
    prefix: str,
    failed_file: Path | None,
    no_progress: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Run FLOW for every workflow id in --ids, at most --concurrency at once.

    Ids are streamed: a file of 100,000 ids never makes 100,000 tasks. Failed
    workflows' ids are written to a file that --ids takes back to retry
    exactly those. Ctrl-C stops starting workflows, cancels those in flight
    (no step is marked that did not finish) and writes the unfinished ids.

    \b
    Examples:
      asteps rerun examples/export_pipeline.py:flow --ids customers.txt --force export
      cat ids.txt | asteps rerun flows.py:flow --ids - --skip crawl --concurrency 64
      asteps rerun flows.py:flow --ids asteps-failed-20261126-101500.txt
      asteps rerun flows.py:flow --ids customers.txt --force export --dry-run
    """
    loaded = guarded(load_flow, flow)
    parsed = guarded(parse_params, params)
    guarded(validate_patterns, [*force, *skip])
    total = _count_lines(ids_file)

    async def batch() -> BatchSummary:
        stop = anyio.Event()
        with _progress(total, not no_progress) as on_workflow:
            async with open_store(store_url) as store, anyio.create_task_group() as tg:
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
                    on_workflow=on_workflow,
                )
                tg.start_soon(_stop_on_interrupt, stop)
                summary = await run.run(read_ids(ids_file), stop=stop)
                tg.cancel_scope.cancel()
        return summary

    with _quiet_step_failures(not (click.get_current_context().obj or {}).get("verbose")):
        summary = run_async(batch)
    retry_file = _write_retry_file(summary, failed_file)
    if as_json:
        data = summary.as_dict()
        data["retry_file"] = str(retry_file) if retry_file else None
        emit_json(data)
    else:
        out.print(_summary_table(summary, retry_file))
    if summary.aborted:
        fail(f"the batch stopped: {summary.aborted}", EXIT_STORE)
    if summary.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if summary.failed_ids:
        sys.exit(EXIT_FAILED)


@contextmanager
def _quiet_step_failures(quiet: bool) -> Iterator[None]:
    """One WARNING per failed step would bury the progress bar; the summary lists
    the failures, and -v brings the log lines back."""
    logger = logging.getLogger("asteps")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _count_lines(stream: IO[str]) -> int | None:
    """How many ids a seekable file holds (for the ETA); None for a pipe."""
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
        count = sum(1 for _ in read_ids(stream))
        stream.seek(position)
        return count
    except (OSError, ValueError):
        return None


async def _stop_on_interrupt(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            err.print(
                "[yellow]interrupted: finishing cleanly (in-flight workflows are "
                "cancelled, nothing unfinished is marked)[/]"
            )
            stop.set()
            return


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
        console=err,
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


def _write_retry_file(summary: BatchSummary, path: Path | None) -> Path | None:
    ids = [*summary.failed_ids, *summary.unfinished_ids]
    if not ids:
        return None
    if path is None:
        kind = "unfinished" if summary.interrupted or summary.aborted else "failed"
        path = Path(f"asteps-{kind}-{time.strftime('%Y%m%d-%H%M%S')}.txt")
    path.write_text("".join(f"{wid}\n" for wid in ids), encoding="utf-8")
    return path


def _summary_table(summary: BatchSummary, retry_file: Path | None) -> Table:
    title = "rerun summary"
    if summary.interrupted or summary.aborted:
        title = "rerun stopped: store failed" if summary.aborted else "rerun interrupted"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    table.add_row("workflows succeeded", str(summary.succeeded))
    table.add_row("workflows failed", f"[red]{len(summary.failed_ids)}[/]")
    if summary.interrupted or summary.aborted:
        table.add_row("workflows unfinished", f"[yellow]{len(summary.unfinished_ids)}[/]")
    planned = [k for k in ("would run", "would skip") if k in summary.steps]
    for status in planned or ["completed", "skipped", "failed"]:
        table.add_row(f"steps {status}", str(summary.steps[status]))
    rate = summary.finished / summary.elapsed if summary.elapsed else 0.0
    table.add_row("elapsed", f"{summary.elapsed:.1f} s ({rate:,.0f} workflows/s)")
    for wid, error in list(summary.errors.items())[:5]:
        table.add_row(f"[red]{escape(wid)}[/]", escape(error))
    if retry_file is not None:
        table.add_row("retry with", f"--ids {escape(str(retry_file))}")
    return table
