"""``asteps swf init | submit | worker | status``: batch reruns spread over
machines by Amazon SWF.

Credentials, region and endpoint come from the standard AWS environment
(``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``...) or ``--endpoint-url``.
Exit codes as for ``rerun``: 0 ok; 1 some ids refused (submit); 2 bad usage
or input, or the domain is not set up; 3 SWF or the store could not be
reached or used; 130 interrupted (143 for SIGTERM; a worker stops cleanly
and exits 0).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from .._flows import parse_params
from .._ids import IdReader
from .._shards import Shard
from ..errors import FlowError, InvalidStepName, StoreError, describe
from ..swf._activity import FlowReport
from ..swf._client import SwfClientOptions
from ..swf._registration import DEFAULT_RETENTION_DAYS, init_domain
from ..swf._submit import Outcome, SubmitSummary, prepare, spelling_warning, submit
from ..swf._types import (
    DEFAULT_TASK_LIST,
    DEFAULT_VERSION,
    MAX_ATTEMPTS,
    MAX_DELAY,
    FlowInputError,
    RetryPolicy,
)
from ..swf._window import DEFAULT_MAX_OPEN, SWF_OPEN_LIMIT
from ..swf.status import STATES, SwfStatus, parse_duration, swf_status
from ..swf.worker import SwfWorker
from ._batch_io import check_retry_location, count_ids, go_on
from ._output import cell
from .app import (
    ERROR_LABEL,
    EXIT_FAILED,
    EXIT_STORE,
    EXIT_USAGE,
    FiniteFloat,
    Interruption,
    emit_json,
    err,
    exclusive_options,
    fail,
    finish_batch,
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


@main.group()
def swf() -> None:
    """Batch reruns on Amazon SWF: durable, spread over any number of machines.

    One SWF execution per workflow id runs the flow with a Runner, as `asteps
    run` does; SWF hands the work to workers, times out a worker that died and
    gives its work to another, and never runs one workflow id twice at once.

    \b
    Examples:
      asteps swf init --domain exports
      asteps swf worker flows.py:flow --domain exports --store s3://my-markers
      asteps swf submit flows.py:flow --domain exports --ids customers.txt --force export
      asteps swf status --domain exports --since 1d --failed-file failed.txt
    """


def swf_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--domain, --endpoint-url, --json, --log-format."""
    fn = log_format_option(fn)
    fn = json_option(fn)
    fn = click.option(
        "--endpoint-url",
        default=None,
        metavar="URL",
        help="SWF endpoint (default: $AWS_ENDPOINT_URL, else AWS's for the region).",
    )(fn)
    return click.option("--domain", required=True, help="The SWF domain.")(fn)


def task_list_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--task-list", default=DEFAULT_TASK_LIST, show_default=True, help="SWF task list."
    )(fn)


def version_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--type-version",
        "version",
        default=DEFAULT_VERSION,
        show_default=True,
        help="Version of the asteps.flow workflow and activity types.",
    )(fn)


# -- init ------------------------------------------------------------------------


@swf.command()
@swf_options
@click.option(
    "--retention-days",
    default=DEFAULT_RETENTION_DAYS,
    show_default=True,
    type=click.IntRange(1, 90),
    help="Days SWF keeps closed executions (what `status` can see).",
)
@version_option
def init(
    domain: str, endpoint_url: str | None, as_json: bool, retention_days: int, version: str
) -> None:
    """Register the domain and the asteps.flow types where missing (idempotent).

    \b
    Examples:
      asteps swf init --domain exports
      asteps swf init --domain exports --retention-days 90
    """

    async def register() -> int:
        async with _swf_client(endpoint_url) as client:
            created = await init_domain(
                client, domain, retention_days=retention_days, version=version
            )
        if as_json:
            emit_json({"domain": domain, "created": created})
        elif created:
            for what in created:
                out.print(f"created {cell(what)}")
        else:
            out.print(f"domain {cell(domain)} and its asteps.flow types exist: nothing to create")
        return 0

    sys.exit(run_async(register))


# -- submit ----------------------------------------------------------------------


@swf.command(name="submit")
@click.argument("flow")
@swf_options
@click.option(
    "--ids",
    "ids_file",
    required=True,
    type=click.File("rb"),
    help="File of workflow ids, one per line ('-' for stdin).",
)
@task_list_option
@pattern_options
@param_option
@click.option(
    "--rps",
    default=50.0,
    show_default=True,
    type=FiniteFloat(min=0.1),
    help="At most this many executions started per second (SWF throttles).",
)
@click.option(
    "--max-attempts",
    default=3,
    show_default=True,
    type=click.IntRange(1, MAX_ATTEMPTS),
    help="Attempts per execution in all, recorded in its input (a drained attempt does not count).",
)
@click.option(
    "--retry-delay",
    default=5.0,
    show_default=True,
    type=FiniteFloat(min=0, max=MAX_DELAY),
    help="Seconds before an execution's 2nd attempt, doubling after each failure.",
)
@click.option(
    "--max-retry-delay",
    default=300.0,
    show_default=True,
    type=FiniteFloat(min=0, max=MAX_DELAY),
    help="The longest wait between two attempts, in seconds.",
)
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Start calls in flight at once.",
)
@click.option(
    "--failed-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the ids to retry (default: asteps-refused-<time>.txt).",
)
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="Store URL the workers use for these executions (default: each worker's --store).",
)
@prefix_option
@click.option(
    "--decision-timeout",
    default=30,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds a worker may hold a decision task (SWF gives it to another after).",
)
@click.option(
    "--max-open",
    default=DEFAULT_MAX_OPEN,
    show_default=True,
    type=click.IntRange(1, SWF_OPEN_LIMIT),
    help="At most this many executions of this submit open at once: past it, starts wait "
    f"for executions to close (SWF allows {SWF_OPEN_LIMIT:,} open per domain).",
)
@shard_option
@version_option
@click.option("--no-progress", is_flag=True, help="No live progress bar on stderr.")
def submit_command(
    flow: str,
    domain: str,
    endpoint_url: str | None,
    as_json: bool,
    ids_file: IO[bytes],
    task_list: str,
    force: tuple[str, ...],
    skip: tuple[str, ...],
    reason: str | None,
    params: tuple[str, ...],
    rps: float,
    max_attempts: int,
    retry_delay: float,
    max_retry_delay: float,
    concurrency: int,
    failed_file: Path | None,
    store_url: str | None,
    prefix: str,
    decision_timeout: int,
    max_open: int,
    shard: Shard | None,
    version: str,
    no_progress: bool,
) -> None:
    """Start one SWF execution of FLOW per workflow id in --ids.

    Everything is checked first (the flow loads, its parameters fit, patterns,
    ids, the input's size); then executions start, at most --rps a second.
    Each execution's input records its retry policy (--max-attempts,
    --retry-delay), which every worker follows.
    An id whose execution is open is "already running", not an error. Refused
    ids go to a retry file that --ids takes back.
    At most --max-open executions of this submit are open at once: past it,
    and whenever SWF's quota of open executions is reached, starts wait for
    executions to close (the progress bar says so), so any number of ids can
    be submitted. --shard K/N submits only the ids of shard K (0-based) of N.

    \b
    Examples:
      asteps swf submit flows.py:flow --domain exports --ids customers.txt
      asteps swf submit flows.py:flow --domain exports --ids - --force export --reason "v2"
      asteps swf submit flows.py:flow --domain exports --ids all.txt --max-open 50000
      asteps swf status --domain exports --failed-file f.txt && \\
        asteps swf submit flows.py:flow --domain exports --ids f.txt
    """
    parsed = guarded(parse_params, params)
    try:
        spec = prepare(
            flow,
            params=parsed,
            force=force,
            skip=skip,
            reason=reason,
            prefix=prefix,
            store=store_url,
            retry=RetryPolicy(
                max_attempts=max_attempts,
                retry_delay=retry_delay,
                max_retry_delay=max_retry_delay,
            ),
        )
    except (FlowError, InvalidStepName, FlowInputError) as exc:
        fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    check_retry_location(failed_file)
    if (warning := spelling_warning(flow)) is not None:
        tell(warning, logging.WARNING, label="[yellow]warning:[/]")
    interruption = Interruption(cancels=False, later="stopping, writing the retry file…")

    async def start_all() -> int:
        assert interruption.stop is not None
        reader = IdReader(ids_file, buffer=concurrency * 4)
        total = await anyio.to_thread.run_sync(count_ids, ids_file, shard)
        # A progress bar would break the JSON lines on stderr.
        with _submit_progress(total, not (no_progress or json_logs())) as (on_id, on_wait):
            reader.start()
            summary = await submit(
                spec,
                reader,
                domain=domain,
                task_list=task_list,
                version=version,
                rps=rps,
                concurrency=concurrency,
                decision_timeout=decision_timeout,
                max_open=max_open,
                shard=shard,
                stop=interruption.stop,
                on_id=on_id,
                on_wait=on_wait,
                endpoint_url=endpoint_url,
            )
        await _submit_report(summary, failed_file, as_json, getattr(ids_file, "name", None))
        if summary.aborted:
            tell(f"the submit stopped: {summary.aborted}", logging.ERROR, label=ERROR_LABEL)
            return EXIT_STORE
        if summary.interrupted:
            return interruption.exit_code
        return EXIT_FAILED if summary.refused else 0

    sys.exit(run_async(start_all, interruption=interruption))


WAITING = "[yellow]waiting for executions to close[/]"
"""What the progress bar says while starts wait (--max-open, or SWF's quota)."""


@contextmanager
def _submit_progress(
    total: int | None, enabled: bool
) -> Iterator[tuple[Callable[[str, Outcome, SubmitSummary], None], Callable[[bool], None]]]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("executions"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("{task.fields[state]}"),
        console=err,
        disable=not enabled,
    )
    task = progress.add_task("submit", total=total, counts="", state="")

    def on_wait(waiting: bool) -> None:
        progress.update(task, state=WAITING if waiting else "")

    def on_id(wid: str, outcome: Outcome, s: SubmitSummary) -> None:
        progress.update(
            task,
            advance=1,
            counts=f"[green]{len(s.started)}[/] started, [cyan]{len(s.already_running)}[/] "
            f"already running, [red]{len(s.refused)}[/] refused",
        )

    with progress:
        yield on_id, on_wait


async def _submit_report(
    summary: SubmitSummary, path: Path | None, as_json: bool, ids_name: object
) -> None:
    kind = "unfinished" if summary.stopped else "refused"
    table = partial(_submit_table, summary, ids_name=ids_name)
    await finish_batch(summary.as_dict(), table, summary.retry_ids, path, kind, as_json)


def _submit_table(
    summary: SubmitSummary, retry_file: Path | None, *, ids_name: object = None
) -> Table:
    title = "swf submit summary"
    if summary.stopped:
        title = "swf submit stopped: SWF failed" if summary.aborted else "swf submit interrupted"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    if summary.shard is not None:
        table.add_row("shard", f"{summary.shard} ({summary.other_shards:,} ids of other shards)")
    table.add_row("started", f"[green]{len(summary.started)}[/]")
    table.add_row("already running", f"[cyan]{len(summary.already_running)}[/]")
    table.add_row("refused", f"[red]{len(summary.refused)}[/]")
    if summary.stopped:
        table.add_row("not tried", f"[yellow]{len(summary.unfinished)}[/]")
    if summary.stopped_at is not None:
        where = go_on(summary.stopped_at, summary.next_line, ids_name)
        table.add_row("[yellow]reading stopped[/]", cell(where))
    table.add_row("elapsed", f"{summary.elapsed:.1f} s")
    if summary.waited:
        what = f"{summary.waited:.1f} s (at most {summary.max_open:,} open)"
        table.add_row("waited for executions to close", what)
    for wid, why in list(summary.refused.items())[:5]:
        table.add_row(f"[red]{cell(wid)}[/]", cell(why))
    if retry_file is not None:
        table.add_row("retry with", f"--ids {cell(str(retry_file))}")
    return table


# -- worker ----------------------------------------------------------------------


@swf.command()
@click.argument("flow")
@swf_options
@task_list_option
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Flows run at once by this worker.",
)
@click.option(
    "--heartbeat",
    default=10.0,
    show_default=True,
    type=FiniteFloat(min=0.1, max=MAX_DELAY),
    help="Seconds between heartbeats; SWF times an attempt out after 3 times that.",
)
@click.option(
    "--max-attempts",
    default=None,
    type=click.IntRange(1, MAX_ATTEMPTS),
    hidden=True,
    help="Ignored: an execution's retry policy is its own (swf submit --max-attempts).",
)
@click.option(
    "--retry-delay",
    default=None,
    type=FiniteFloat(min=0, max=MAX_DELAY),
    hidden=True,
    help="Ignored: an execution's retry policy is its own (swf submit --retry-delay).",
)
@click.option(
    "--drain",
    default=30.0,
    show_default=True,
    type=FiniteFloat(min=0, max=MAX_DELAY),
    help="On SIGINT/SIGTERM, seconds running flows get to finish.",
)
@store_option
@click.option(
    "--allow-store",
    "allow_stores",
    multiple=True,
    metavar="URL",
    help="A store URL an execution's input may name (`swf submit --store`), besides "
    "--store (repeatable); an input naming any other store fails at once.",
)
@click.option(
    "--signals", is_flag=True, help="Send each runner's step.<name> signals to its execution."
)
@exclusive_options
@version_option
@click.option("--identity", default=None, help="Worker name in SWF (default: host:pid).")
@otel_option
def worker(
    flow: str,
    domain: str,
    endpoint_url: str | None,
    as_json: bool,
    task_list: str,
    concurrency: int,
    heartbeat: float,
    max_attempts: int | None,
    retry_delay: float | None,
    drain: float,
    store_url: str | None,
    allow_stores: tuple[str, ...],
    signals: bool,
    exclusive: bool,
    lease: float,
    version: str,
    identity: str | None,
) -> None:
    """Poll the task list and run FLOW for its executions, --concurrency at once.

    Run any number of workers on any number of machines. Logs one line per
    workflow attempt finished (JSON lines on stdout with --json). SIGINT or
    SIGTERM stops polling and lets running flows finish within --drain
    seconds; those still running then are cancelled (no step is marked) and
    handed back to SWF for another worker, without using up an attempt.

    Flows run on --store; an execution may name another store only if it is
    listed with --allow-store. Each execution is retried by its own policy,
    set by `swf submit`. With --exclusive each step is claimed in the store
    before it runs: a slow worker still running an attempt that SWF timed out
    and the worker given the retry never both run a step.

    \b
    Examples:
      asteps swf worker flows.py:flow --domain exports --store s3://my-markers
      asteps swf worker pkg.flows:export --domain exports --concurrency 32 --heartbeat 30
    """
    for name, value in (("--max-attempts", max_attempts), ("--retry-delay", retry_delay)):
        if value is not None:
            tell(
                f"{name} is ignored by workers: each execution is retried by its own "
                f"policy; give `asteps swf submit {name}` instead",
                logging.WARNING,
                label="[yellow]warning:[/]",
            )
    try:
        the_worker = SwfWorker(
            flow,
            domain=domain,
            task_list=task_list,
            concurrency=concurrency,
            heartbeat=heartbeat,
            drain=drain,
            store=store_url,
            allow_stores=allow_stores,
            signals=signals,
            version=version,
            identity=identity,
            endpoint_url=endpoint_url,
            on_workflow=_workflow_line(as_json),
            exclusive=exclusive,
            lease=lease,
        )
    except (FlowError, InvalidStepName, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    interruption = Interruption(
        cancels=False,
        first=(
            f"interrupted: running flows get up to {drain:g} s to finish; no new work is "
            "taken, and nothing unfinished is marked done"
        ),
        later=f"stopping: running flows get up to {drain:g} s to finish…",
    )

    async def work() -> int:
        tell(
            f"worker {the_worker.identity}: domain {domain}, task list {task_list}, "
            f"up to {concurrency} flows at once (Ctrl-C to stop)",
            logging.INFO,
        )
        stats = await the_worker.run(interruption.stop)
        flows = ", ".join(f"{n} {what}" for what, n in sorted(stats.flows.items())) or "none"
        tell(f"worker stopped: flows {flows}; {stats.decisions} decisions", logging.INFO)
        return 0

    sys.exit(run_async(work, interruption=interruption))


def _workflow_line(as_json: bool) -> Callable[[FlowReport], None]:
    def line(report: FlowReport) -> None:
        if as_json:
            data = {
                "workflow_id": report.workflow_id,
                "run_id": report.run_id,
                "outcome": report.outcome,
                "steps": dict(report.steps),
                "error": report.error,
                "duration": round(report.duration, 3),
            }
            emit_json_line(data)
            return
        steps = ", ".join(f"{n} {status}" for status, n in sorted(report.steps.items()))
        colour = {"completed": "green", "failed": "red"}.get(report.outcome, "yellow")
        text = report.workflow_id
        if steps:
            text += f" (steps: {steps})"
        if report.error:
            text += f": {report.error}"
        tell(
            f"{text} in {report.duration:.2f} s",
            logging.WARNING if report.outcome == "failed" else logging.INFO,
            label=f"[{colour}]{report.outcome}[/]",
            workflow_id=report.workflow_id,
            status=report.outcome,
        )

    return line


def emit_json_line(data: Any) -> None:
    """One JSON object on one line of stdout."""
    click.echo(json.dumps(data, default=str))


# -- status ----------------------------------------------------------------------


@swf.command()
@swf_options
@click.option(
    "--since",
    default=None,
    metavar="DURATION",
    help="Only executions started in the last DURATION (30m, 12h, 7d).",
)
@click.option(
    "--failed-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the failed ids here (for `submit --ids`).",
)
@version_option
def status(
    domain: str,
    endpoint_url: str | None,
    as_json: bool,
    since: str | None,
    failed_file: Path | None,
    version: str,
) -> None:
    """Count the executions of type asteps.flow by state; list the failed ids.

    A workflow id is failed when its latest execution failed or timed out.

    \b
    Examples:
      asteps swf status --domain exports
      asteps swf status --domain exports --since 1d --failed-file failed.txt --json
    """
    try:
        seconds = parse_duration(since) if since is not None else None
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if failed_file is not None:
        check_retry_location(failed_file)

    async def count() -> int:
        found = await swf_status(domain, since=seconds, version=version, endpoint_url=endpoint_url)
        written = _write_failed(found, failed_file)
        if as_json:
            emit_json(found.as_dict())
        else:
            out.print(_status_table(domain, found, written))
        return 0

    sys.exit(run_async(count))


def _write_failed(found: SwfStatus, path: Path | None) -> Path | None:
    if path is None or not found.failed_ids:
        return None
    try:
        path.write_text("".join(f"{w}\n" for w in found.failed_ids), encoding="utf-8")
    except OSError as exc:
        fail(f"could not write {str(path)!r}: {describe(exc)}", EXIT_FAILED)
    return path


def _status_table(domain: str, found: SwfStatus, written: Path | None) -> Table:
    table = Table(title=f"asteps.flow executions in {domain}", title_justify="left")
    table.add_column("state")
    table.add_column("executions", justify="right")
    for state in STATES:
        table.add_row(state.replace("_", " "), str(found.counts[state]))
    if found.failed_ids:
        shown = ", ".join(found.failed_ids[:5]) + (" …" if len(found.failed_ids) > 5 else "")
        table.add_row("[red]failed ids[/]", cell(shown))
        hint = f"--ids {written}" if written else "write them with --failed-file F"
        table.add_row("retry", cell(hint))
    return table


@asynccontextmanager
async def _swf_client(endpoint_url: str | None) -> AsyncIterator[Any]:
    """An SWF client from the standard AWS environment (or ``endpoint_url``)."""
    async with AsyncExitStack() as stack:
        yield await SwfClientOptions(None, endpoint_url, None, None).open(stack)
