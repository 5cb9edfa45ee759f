"""The ``asteps`` command group, its consoles and the options commands share.

Results go to stdout, progress and logs to stderr. Exit codes: 0 success; 1 a
step or workflow failed (or a confirmation was refused); 2 bad usage or input
(flow, pattern, name, workflow id, parameter); 3 the store could not be reached
or used; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import anyio
import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from .._concurrency import first_exception
from .._runner import DEFAULT_PREFIX
from ..errors import AstepsError, FlowError, InvalidStepName, StoreError

EXIT_FAILED, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 1, 2, 3, 130

out = Console()
err = Console(stderr=True)

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` to stderr, unwrapped, and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def run_async(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run a command's coroutine; asteps errors become a message and an exit code."""
    try:
        try:
            return anyio.run(fn, *args)
        except ExceptionGroup as group:  # from a task group: report its first error
            raise first_exception(group) from None
    except (FlowError, InvalidStepName) as exc:
        fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    except AstepsError as exc:
        fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        # asyncio cancelled the run: no step that was cut short is marked done.
        fail("interrupted; steps cut short were not marked done", EXIT_INTERRUPTED)


def emit_json(data: Any) -> None:
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


def guarded(fn: Callable[..., T], *args: Any) -> T:
    """Call a validation; a bad flow, name or pattern exits 2 with its message."""
    try:
        return fn(*args)
    except (FlowError, InvalidStepName) as exc:
        fail(str(exc), EXIT_USAGE)
