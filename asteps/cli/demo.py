"""``asteps demo``: the three-run demo on the file store, or on S3 through moto."""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .._bus import Signal
from .._demo import run_demo
from .._names import validate_workflow_id
from .._step import StepOutcome
from ..stores.file import FileStore
from ._output import cell, outcome_row, outcomes_table, signals_table
from .app import (
    EXIT_USAGE,
    emit_json,
    fail,
    guarded,
    json_option,
    log_format_option,
    main,
    out,
    run_async,
)

Show = Callable[[str, list[StepOutcome], list[Signal]], None]


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
@log_format_option
def demo(root: Path | None, use_s3: bool, workflow_id: str, as_json: bool) -> None:
    """Run a small flow three times: executed, skipped, then 'a' forced.

    \b
    Examples:
      asteps demo
      asteps demo --root ./.asteps-demo
      asteps demo --s3
      asteps demo --json
    """
    guarded(validate_workflow_id, workflow_id)  # before any store is made
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
        out().print(outcomes_table(outcomes, title=title))
        out().print(signals_table(signals))
        out().print()

    if use_s3:
        if importlib.util.find_spec("moto") is None:
            fail(
                "asteps demo --s3 needs moto[server] in this environment: install it "
                "(pip install 'moto[server]', or uv pip install 'moto[server]'); in a "
                "clone of asteps, make test installs it",
                EXIT_USAGE,
            )
        run_async(_demo_s3, workflow_id, show, as_json)
    else:
        with tempfile.TemporaryDirectory(prefix="asteps-demo-") as tmp:
            store = FileStore(root or tmp)
            if not as_json:
                out().print(f"store: {cell(repr(store))}\n")
            run_async(run_demo, store, workflow_id, show)
    if as_json:
        emit_json(runs)


async def _demo_s3(workflow_id: str, show: Show, quiet: bool) -> None:
    from ..stores.s3 import S3Store
    from ..testing import moto_server

    with moto_server() as server:
        async with S3Store(
            "asteps-demo", endpoint_url=server.endpoint_url, session=server.session()
        ) as store:
            await store.client.create_bucket(Bucket="asteps-demo")
            if not quiet:
                out().print(f"store: {cell(repr(store))} (in-process moto server)\n")
            await run_demo(store, workflow_id, show)
