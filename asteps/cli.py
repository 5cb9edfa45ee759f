"""The ``asteps`` command. Results go to stdout, progress and logs to stderr."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio
import click
from rich.console import Console

from .bus import Signal
from .demo import run_demo
from .step import StepOutcome
from .stores.file import FileStore
from .tables import outcomes_table, signals_table

out = Console()
err = Console(stderr=True)

Show = Callable[[str, list[StepOutcome], list[Signal]], None]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asteps")
def main() -> None:
    """asteps: named steps that run once per workflow, forced or skipped by pattern."""


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
def demo(root: Path | None, use_s3: bool, workflow_id: str) -> None:
    """Run a small flow three times: executed, skipped, then 'a' forced.

    \b
    Examples:
      asteps demo
      asteps demo --root ./.asteps-demo
      asteps demo --s3
    """

    def show(title: str, outcomes: list[StepOutcome], signals: list[Signal]) -> None:
        out.print(outcomes_table(outcomes, title=title))
        out.print(signals_table(signals))
        out.print()

    if use_s3:
        anyio.run(_demo_s3, workflow_id, show)
        return
    with tempfile.TemporaryDirectory(prefix="asteps-demo-") as tmp:
        store = FileStore(root or tmp)
        out.print(f"store: {store!r}\n")
        anyio.run(run_demo, store, workflow_id, show)


async def _demo_s3(workflow_id: str, show: Show) -> None:
    from .moto_server import moto_server
    from .stores.s3 import S3Store

    with moto_server() as server:
        async with S3Store("asteps-demo", endpoint_url=server.endpoint_url) as store:
            await store.client.create_bucket(Bucket="asteps-demo")
            out.print(f"store: {store!r} (in-process moto server)\n")
            await run_demo(store, workflow_id, show)
