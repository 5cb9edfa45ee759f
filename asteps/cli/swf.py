"""``asteps swf init | submit | worker | status``: batch reruns spread over
machines by Amazon SWF.

Credentials, region and endpoint come from the standard AWS environment
(``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``...) or ``--endpoint-url``.
Exit codes as for ``rerun``: 0 ok; 1 some ids refused (submit); 2 bad usage
or input, or the domain is not set up; 3 SWF or the store could not be
reached or used; 130 interrupted (143 for SIGTERM; a worker stops cleanly
and exits 0).

Here: the ``swf`` group, the options its commands share, and ``submit``;
``worker`` is in :mod:`asteps.cli.swf_worker`, ``init`` and ``status`` in
:mod:`asteps.cli.swf_domain`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from .. import Shard
from .._flows import parse_params
from .._ids import IdReader
from ..errors import FlowError, InvalidName, StoreError
from ..swf import (
    DEFAULT_MAX_OPEN,
    DEFAULT_TASK_LIST,
    DEFAULT_VERSION,
    MAX_ATTEMPTS,
    MAX_DELAY,
    SWF_OPEN_LIMIT,
    FlowInputError,
    Outcome,
    RetryPolicy,
    SubmitSummary,
    prepare,
    spelling_warning,
    submit,
)
from ._batch_io import check_retry_location, count_ids, go_on
from ._output import cell
from .app import (
    ERROR_LABEL,
    EXIT_FAILED,
    EXIT_STORE,
    EXIT_USAGE,
    FiniteFloat,
    Interruption,
    err,
    fail,
    finish_batch,
    guarded,
    json_logs,
    json_option,
    log_format_option,
    main,
    param_option,
    pattern_options,
    prefix_option,
    run_async,
    shard_option,
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
    except (FlowError, InvalidName, FlowInputError) as exc:
        fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    check_retry_location(failed_file, ids_file)
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
        console=err(),
        disable=not enabled,
    )
    task = progress.add_task("submit", total=total, counts="", state="")

    def on_wait(waiting: bool) -> None:
        progress.update(task, state=WAITING if waiting else "")

    def on_id(wid: str, outcome: Outcome, s: SubmitSummary) -> None:
        progress.update(
            task,
            advance=1,
            counts=f"[green]{s.started}[/] started, [cyan]{s.already_running}[/] "
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
    table.add_row("started", f"[green]{summary.started}[/]")
    table.add_row("already running", f"[cyan]{summary.already_running}[/]")
    table.add_row("refused", f"[red]{len(summary.refused)}[/]")
    if summary.repeated:
        table.add_row("repeated ids", f"{summary.repeated:,} (each started once)")
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
