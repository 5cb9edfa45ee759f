"""``asteps swf worker``: run a flow for the executions SWF hands out, until
stopped (SIGINT or SIGTERM drains it, a second one ends the drain at once:
exit 0)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ..errors import FlowError, InvalidName, StoreError
from ..swf import MAX_ATTEMPTS, MAX_DELAY, FlowReport, SwfWorker
from .app import (
    EXIT_STORE,
    EXIT_USAGE,
    FiniteFloat,
    Interruption,
    exclusive_options,
    fail,
    otel_option,
    run_async,
    store_option,
    tell,
)
from .swf import swf, swf_options, task_list_option, version_option


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
    help="On SIGINT/SIGTERM, seconds running flows get to finish (a second signal cuts it short).",
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
    handed back to SWF for another worker, without using up an attempt. A
    second SIGINT or SIGTERM does that at once, without waiting out --drain.

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
    except (FlowError, InvalidName, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    interruption = worker_interruption(drain)

    async def work() -> int:
        tell(
            f"worker {the_worker.identity}: domain {domain}, task list {task_list}, "
            f"up to {concurrency} flows at once (Ctrl-C to stop)",
            logging.INFO,
        )
        stats = await the_worker.run(interruption.stop, stop_now=interruption.stop_now)
        flows = ", ".join(f"{n} {what}" for what, n in sorted(stats.flows.items())) or "none"
        tell(f"worker stopped: flows {flows}; {stats.decisions} decisions", logging.INFO)
        return 0

    sys.exit(run_async(work, interruption=interruption))


def worker_interruption(drain: float, clock: Callable[[], float] = time.monotonic) -> Interruption:
    """What SIGINT and SIGTERM do to a worker: the first drains it (``stop``),
    the second ends the drain at once (``stop_now``), unless it came within a
    second of the first (the same stop, sent twice); a third only prints."""
    return Interruption(
        clock=clock,
        cancels=False,
        first=(
            f"interrupted: running flows get up to {drain:g} s to finish; no new work is "
            "taken, and nothing unfinished is marked done (interrupt again to stop now)"
        ),
        later=(
            "stopping now: running flows are being cancelled and handed back to SWF for "
            "another worker (nothing unfinished is marked done)…"
        ),
        second_stops_now=True,
    )


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
