"""``asteps swf init`` and ``asteps swf status``: set a domain up, and count
what ran in it."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from ..errors import describe
from ..swf import DEFAULT_RETENTION_DAYS, SwfStatus, init_domain, open_swf_client, swf_status
from ..swf.status import STATES, parse_duration
from ._batch_io import check_retry_location
from ._output import cell, emit_json
from .app import EXIT_FAILED, EXIT_USAGE, fail, out, run_async
from .swf import swf, swf_options, version_option


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
        async with open_swf_client(endpoint_url=endpoint_url) as client:
            created = await init_domain(
                client, domain, retention_days=retention_days, version=version
            )
        if as_json:
            emit_json({"domain": domain, "created": created})
        elif created:
            for what in created:
                out().print(f"created {cell(what)}")
        else:
            out().print(f"domain {cell(domain)} and its asteps.flow types exist: nothing to create")
        return 0

    sys.exit(run_async(register))


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
            out().print(_status_table(domain, found, written))
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
