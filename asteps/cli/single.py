"""``asteps run`` and ``asteps plan``: one workflow, for real or as a dry run."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from .. import WorkflowReport, run_workflow
from .._claims import DEFAULT_LEASE
from .._flows import check_params, load_flow, parse_params
from .._names import format_prefix, validate_patterns, validate_workflow_id
from .._step import StepOutcome
from .._workflow import workflow_runner
from ..stores.urls import open_store
from ._output import cell, outcome_row, outcomes_table, plan_table, why
from .app import (
    EXIT_FAILED,
    EXIT_STORE,
    emit_json,
    exclusive_options,
    fail,
    flow_version_option,
    guarded,
    json_option,
    log_format_option,
    main,
    otel_option,
    out,
    param_option,
    pattern_options,
    prefix_option,
    run_async,
    store_option,
    tell,
)


def single_workflow_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """FLOW, --workflow-id, --force/--skip/--reason, --flow-version, --param, --store,
    --prefix, --json, --otel, --log-format."""
    for option in (
        log_format_option,
        otel_option,
        json_option,
        prefix_option,
        store_option,
        param_option,
        flow_version_option,
        pattern_options,
    ):
        fn = option(fn)
    fn = click.option("--workflow-id", required=True, help="The workflow.")(fn)
    return click.argument("flow")(fn)


@main.command()
@single_workflow_options
@exclusive_options
def run(**options: Any) -> None:
    """Run FLOW for one workflow and show its steps.

    \b
    Examples:
      asteps run examples/export_pipeline.py:flow --workflow-id customer-42
      asteps run examples/export_pipeline.py:flow --workflow-id customer-42 \\
          --force export --reason "new CSV columns"
      asteps run flows.py:flow --workflow-id customer-42 --exclusive --lease 120
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
    flow_version: str | None,
    params: tuple[str, ...],
    store_url: str | None,
    prefix: str,
    as_json: bool,
    dry_run: bool,
    exclusive: bool = False,
    lease: float = DEFAULT_LEASE,
) -> None:
    # Every input is checked before the store is opened.
    loaded = guarded(load_flow, flow)
    guarded(validate_workflow_id, workflow_id)
    parsed = guarded(parse_params, params)
    guarded(check_params, loaded, parsed)
    guarded(validate_patterns, [*force, *skip])
    guarded(format_prefix, prefix, workflow_id, None)

    async def one() -> WorkflowReport:
        async with open_store(store_url) as store:
            runner = workflow_runner(
                store,
                workflow_id,
                force=force,
                skip=skip,
                reason=reason,
                prefix=prefix,
                dry_run=dry_run,
                version=flow_version,
                exclusive=exclusive,
                lease=lease,
            )
            return await run_workflow(loaded, runner, parsed)

    report = run_async(one)
    title = f"plan for workflow {workflow_id}" if dry_run else f"workflow {workflow_id}"
    _show_report(report, as_json, title=cell(title))
    if (failure := report.store_error) is not None:
        fail(str(failure), EXIT_STORE)
    if not report.ok:
        if not as_json:
            what = "the flow failed in a dry run" if dry_run else "failed"
            tell(
                report.error or "",
                logging.ERROR,
                label=f"[bold red]{what}:[/]",
                workflow_id=workflow_id,
                status="failed",
            )
        sys.exit(EXIT_FAILED)


def _show_report(report: WorkflowReport, as_json: bool, *, title: str) -> None:
    if as_json:
        emit_json(
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
        out().print(plan_table(report.outcomes, title=title))
    else:
        out().print(outcomes_table(report.outcomes, title=title))


def _plan_row(outcome: StepOutcome) -> dict[str, Any]:
    row = outcome_row(outcome)
    row["would"] = outcome.decision
    row["why"] = why(outcome)
    return row
