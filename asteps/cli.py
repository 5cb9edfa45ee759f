"""The ``asteps`` command. Results go to stdout, progress and logs to stderr.

Exit codes: 0 success; 1 a step or workflow failed (or a confirmation was
refused); 2 bad usage or input (flow, pattern, store URL); 3 the store could
not be reached or used; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import anyio
import click
from rich.console import Console
from rich.logging import RichHandler
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

from .batch import BatchRun, BatchSummary, WorkflowReport, read_ids
from .bus import Signal
from .concurrency import for_each
from .demo import run_demo
from .errors import AstepsError, FlowError, InvalidStepName, StoreError
from .flows import load_flow, parse_params
from .names import format_prefix, validate_name, validate_patterns, validate_workflow_id
from .runner import DEFAULT_PREFIX
from .step import StepOutcome
from .stores.base import DoneStore, list_done_many, matching
from .stores.file import FileStore
from .stores.urls import default_store_url, open_store
from .tables import outcome_row, outcomes_table, plan_table, signals_table, why

EXIT_FAILED, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 1, 2, 3, 130
MANUAL_RUN_ID = "asteps-cli"
BULK_CONCURRENCY = 32  # store requests in flight for steps list/mark/unmark

out = Console()
err = Console(stderr=True)

Show = Callable[[str, list[StepOutcome], list[Signal]], None]
T = TypeVar("T")


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _run_async(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run a command's coroutine; asteps errors become a message and an exit code."""
    try:
        try:
            return anyio.run(fn, *args)
        except ExceptionGroup as group:  # from a task group: report its first error
            first = group.exceptions[0]
            while isinstance(first, ExceptionGroup):
                first = first.exceptions[0]
            raise first from None
    except (FlowError, InvalidStepName) as exc:
        _fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        _fail(str(exc), EXIT_STORE)
    except AstepsError as exc:
        _fail(str(exc), EXIT_FAILED)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- shared options ------------------------------------------------------------


def store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        "store_url",
        default=None,
        metavar="URL",
        help="s3://bucket?endpoint_url=..., file:path or memory:// "
        "(default: $ASTEPS_STORE, else file:.asteps).",
    )(fn)


def prefix_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--prefix",
        default=DEFAULT_PREFIX,
        show_default=True,
        help="Marker prefix template; sees {workflow_id}.",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)


def pattern_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--reason", default=None, help="Reason recorded for --force/--skip.")(fn)
    fn = click.option(
        "--skip", "skip", multiple=True, metavar="PATTERN", help="Skip steps (repeatable)."
    )(fn)
    fn = click.option(
        "--force", "force", multiple=True, metavar="PATTERN", help="Force steps (repeatable)."
    )(fn)
    return fn


def param_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--param", "params", multiple=True, metavar="KEY=VALUE", help="Flow parameter."
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asteps")
@click.option("-v", "--verbose", count=True, help="-v: INFO logs, -vv: DEBUG (to stderr).")
def main(verbose: int) -> None:
    """asteps: named steps that run once per workflow, forced or skipped by pattern.

    \b
    Exit codes: 0 ok, 1 a step or workflow failed, 2 bad usage or input,
    3 store unreachable or unusable, 130 interrupted.
    """
    click.get_current_context().obj = {"verbose": verbose}
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = RichHandler(console=err, show_path=False, show_time=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    if verbose < 2:
        logging.getLogger("botocore").setLevel(logging.WARNING)


# -- run and plan ---------------------------------------------------------------


def single_workflow_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """FLOW, --workflow-id, --force/--skip/--reason, --param, --store, --prefix, --json."""
    for option in (json_option, prefix_option, store_option, param_option, pattern_options):
        fn = option(fn)
    fn = click.option("--workflow-id", required=True, help="The workflow.")(fn)
    return click.argument("flow")(fn)


@main.command()
@single_workflow_options
def run(**options: Any) -> None:
    """Run FLOW for one workflow and show its steps.

    \b
    Examples:
      asteps run examples/export_pipeline.py:flow --workflow-id customer-42
      asteps run examples/export_pipeline.py:flow --workflow-id customer-42 \\
          --force export --reason "new CSV columns"
    """
    _single(dry_run=False, **options)


@main.command()
@single_workflow_options
def plan(**options: Any) -> None:
    """Dry run: what would run or be skipped for one workflow, and why.

    Decisions are made against the real done list; no activity runs and
    nothing is written.

    \b
    Examples:
      asteps plan examples/export_pipeline.py:flow --workflow-id customer-42 --force export.csv
    """
    _single(dry_run=True, **options)


def _single(
    *,
    flow: str,
    workflow_id: str,
    force: tuple[str, ...],
    skip: tuple[str, ...],
    reason: str | None,
    params: tuple[str, ...],
    store_url: str | None,
    prefix: str,
    as_json: bool,
    dry_run: bool,
) -> None:
    loaded = _guarded(load_flow, flow)
    _guarded(validate_workflow_id, workflow_id)
    parsed = _guarded(parse_params, params)
    _guarded(validate_patterns, [*force, *skip])  # refused before the store is opened

    async def one() -> WorkflowReport:
        async with open_store(store_url) as store:
            batch = BatchRun(
                loaded,
                store,
                force=force,
                skip=skip,
                reason=reason,
                params=parsed,
                prefix=prefix,
                dry_run=dry_run,
            )
            return await batch.run_one(workflow_id)

    report = _run_async(one)
    title = f"plan for workflow {workflow_id}" if dry_run else f"workflow {workflow_id}"
    _show_report(report, as_json, title=title)
    if isinstance(report.exception, StoreError):
        _fail(str(report.exception), EXIT_STORE)
    if not report.ok:
        if not as_json:
            what = "the flow failed in a dry run" if dry_run else "failed"
            err.print(f"[bold red]{what}:[/] {escape(report.error or '')}", soft_wrap=True)
        sys.exit(EXIT_FAILED)


def _show_report(report: WorkflowReport, as_json: bool, *, title: str) -> None:
    if as_json:
        _emit_json(
            {
                "workflow_id": report.workflow_id,
                "ok": report.ok,
                "error": report.error,
                "steps": [
                    _plan_row(o) if o.status == "planned" else outcome_row(o)
                    for o in report.outcomes
                ],
            }
        )
    elif report.outcomes and all(o.status == "planned" for o in report.outcomes):
        out.print(plan_table(report.outcomes, title=title))
    else:
        out.print(outcomes_table(report.outcomes, title=title))


def _plan_row(outcome: StepOutcome) -> dict[str, Any]:
    row = outcome_row(outcome)
    row["would"] = outcome.decision
    row["why"] = why(outcome)
    return row


# -- rerun ----------------------------------------------------------------------


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
    loaded = _guarded(load_flow, flow)
    parsed = _guarded(parse_params, params)
    _guarded(validate_patterns, [*force, *skip])
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
        summary = _run_async(batch)
    retry_file = _write_retry_file(summary, failed_file)
    if as_json:
        data = summary.as_dict()
        data["retry_file"] = str(retry_file) if retry_file else None
        _emit_json(data)
    else:
        out.print(_summary_table(summary, retry_file))
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


def _guarded(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except (FlowError, InvalidStepName) as exc:
        _fail(str(exc), EXIT_USAGE)


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
        kind = "unfinished" if summary.interrupted else "failed"
        path = Path(f"asteps-{kind}-{time.strftime('%Y%m%d-%H%M%S')}.txt")
    path.write_text("".join(f"{wid}\n" for wid in ids), encoding="utf-8")
    return path


def _summary_table(summary: BatchSummary, retry_file: Path | None) -> Table:
    title = "rerun interrupted" if summary.interrupted else "rerun summary"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    table.add_row("workflows succeeded", str(summary.succeeded))
    table.add_row("workflows failed", f"[red]{len(summary.failed_ids)}[/]")
    if summary.interrupted:
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


# -- steps: list, mark, unmark ------------------------------------------------------


@main.group()
def steps() -> None:
    """Inspect and edit the done markers of workflows."""


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--ids",
        "ids_file",
        type=click.File("r"),
        default=None,
        help="File of workflow ids ('-' for stdin).",
    )(fn)
    fn = click.option("--workflow-id", default=None, help="One workflow.")(fn)
    return fn


def _targets(workflow_id: str | None, ids_file: IO[str] | None) -> list[str]:
    if workflow_id is not None and ids_file is None:
        ids = [workflow_id]
    elif ids_file is not None and workflow_id is None:
        ids = list(dict.fromkeys(read_ids(ids_file)))
    else:
        _fail("give exactly one of --workflow-id or --ids", EXIT_USAGE)
    for wid in ids:
        _guarded(validate_workflow_id, wid)
    return ids


async def _done_sets(store: DoneStore, ids: list[str], prefix: str) -> dict[str, set[str]]:
    prefixes = {format_prefix(prefix, wid, None): wid for wid in ids}
    listed = await list_done_many(store, prefixes, concurrency=BULK_CONCURRENCY)
    return {prefixes[p]: set(names) for p, names in listed.items()}


@steps.command("list")
@target_options
@store_option
@prefix_option
@json_option
def steps_list(
    workflow_id: str | None,
    ids_file: IO[str] | None,
    store_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """List the done steps of workflows.

    \b
    Examples:
      asteps steps list --workflow-id customer-42
      asteps steps list --ids customers.txt --json
    """
    ids = _targets(workflow_id, ids_file)
    done = _run_async(_list_steps, ids, store_url, prefix)
    if as_json:
        _emit_json({wid: sorted(names) for wid, names in done.items()})
        return
    table = Table(title=f"done steps ({_store_label(store_url)})", title_justify="left")
    table.add_column("workflow")
    table.add_column("done", justify="right")
    table.add_column("steps")
    for wid in ids:
        names = sorted(done[wid])
        table.add_row(escape(wid), str(len(names)), escape(", ".join(names)))
    out.print(table)


async def _list_steps(ids: list[str], store_url: str | None, prefix: str) -> dict[str, set[str]]:
    async with open_store(store_url) as store:
        return await _done_sets(store, ids, prefix)


@steps.command("mark")
@target_options
@click.argument("names", nargs=-1, required=True)
@store_option
@prefix_option
@json_option
def steps_mark(
    workflow_id: str | None,
    ids_file: IO[str] | None,
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
    ids = _targets(workflow_id, ids_file)
    for name in names:
        _guarded(validate_name, name)
    _run_async(_mark, ids, names, store_url, prefix)
    if as_json:
        _emit_json({"marked": {wid: list(names) for wid in ids}})
    else:
        out.print(f"marked {len(names)} step(s) done in {len(ids)} workflow(s)")


async def _mark(ids: list[str], names: tuple[str, ...], store_url: str | None, prefix: str) -> None:
    async def mark(pair: tuple[str, str]) -> None:
        wid, name = pair
        body = {"run_id": MANUAL_RUN_ID, "workflow_id": wid, "version": None}
        await store.mark_done(format_prefix(prefix, wid, None), name, body)

    async with open_store(store_url) as store:
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
def steps_unmark(
    workflow_id: str | None,
    ids_file: IO[str] | None,
    patterns: tuple[str, ...],
    yes: bool,
    dry_run: bool,
    store_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """Remove done markers by PATTERN... (hierarchical: 'a' removes a, a.b, a.b.c; not ab).

    Shows what it will remove and asks for confirmation unless --yes.

    \b
    Examples:
      asteps steps unmark --workflow-id customer-42 report --dry-run
      asteps steps unmark --ids customers.txt export --yes
    """
    ids = _targets(workflow_id, ids_file)
    found = _run_async(_find_matching, ids, patterns, store_url, prefix)
    removable = {wid: names for wid, names in found.items() if names}
    count = sum(len(n) for n in removable.values())
    if not as_json:
        table = Table(title=f"markers matching {', '.join(patterns)}", title_justify="left")
        table.add_column("workflow")
        table.add_column("steps to remove")
        for wid, names in removable.items():
            table.add_row(escape(wid), escape(", ".join(names)))
        out.print(table if removable else "nothing matches")
    if dry_run or not removable:
        if as_json:
            _emit_json({"removed": {}, "would_remove": removable})
        return
    if not yes and not click.confirm(
        f"remove {count} marker(s) from {len(removable)} workflow(s)?", err=True
    ):
        err.print("nothing removed")
        sys.exit(EXIT_FAILED)
    _run_async(_unmark, removable, store_url, prefix)
    if as_json:
        _emit_json({"removed": removable})
    else:
        out.print(f"removed {count} marker(s)")


async def _find_matching(
    ids: list[str], patterns: tuple[str, ...], store_url: str | None, prefix: str
) -> dict[str, list[str]]:
    async with open_store(store_url) as store:
        done = await _done_sets(store, ids, prefix)
    return {wid: matching(done[wid], patterns) for wid in ids}


async def _unmark(removable: dict[str, list[str]], store_url: str | None, prefix: str) -> None:
    async def unmark(item: tuple[str, list[str]]) -> None:
        wid, names = item
        await store.unmark(format_prefix(prefix, wid, None), names)

    async with open_store(store_url) as store:
        await for_each(removable.items(), unmark, concurrency=BULK_CONCURRENCY)


def _store_label(store_url: str | None) -> str:
    return store_url or default_store_url()


# -- demo -----------------------------------------------------------------------


@main.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="FileStore root to use (default: a fresh temporary directory).",
)
@click.option(
    "--s3",
    "use_s3",
    is_flag=True,
    help="Use the S3 store against an in-process moto server (needs moto[server]).",
)
@click.option("--workflow-id", default="demo-workflow", show_default=True)
@json_option
def demo(root: Path | None, use_s3: bool, workflow_id: str, as_json: bool) -> None:
    """Run a small flow three times: executed, skipped, then 'a' forced.

    \b
    Examples:
      asteps demo
      asteps demo --root ./.asteps-demo
      asteps demo --s3
      asteps demo --json
    """
    runs: list[dict[str, Any]] = []

    def show(title: str, outcomes: list[StepOutcome], signals: list[Signal]) -> None:
        if as_json:
            runs.append(
                {
                    "run": title,
                    "steps": [outcome_row(o) for o in outcomes],
                    "signals": [{"name": s.name, "payload": s.payload} for s in signals],
                }
            )
            return
        out.print(outcomes_table(outcomes, title=title))
        out.print(signals_table(signals))
        out.print()

    if use_s3:
        _run_async(_demo_s3, workflow_id, show, as_json)
    else:
        with tempfile.TemporaryDirectory(prefix="asteps-demo-") as tmp:
            store = FileStore(root or tmp)
            if not as_json:
                out.print(f"store: {store!r}\n")
            _run_async(run_demo, store, workflow_id, show)
    if as_json:
        _emit_json(runs)


async def _demo_s3(workflow_id: str, show: Show, quiet: bool) -> None:
    from .moto_server import moto_server
    from .stores.s3 import S3Store

    with moto_server() as server:
        async with S3Store("asteps-demo", endpoint_url=server.endpoint_url) as store:
            await store.client.create_bucket(Bucket="asteps-demo")
            if not quiet:
                out.print(f"store: {store!r} (in-process moto server)\n")
            await run_demo(store, workflow_id, show)
