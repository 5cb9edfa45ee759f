"""The ``asteps`` command group, its consoles and the options commands share.

Results go to stdout, progress and logs to stderr. Exit codes: 0 success; 1 a
step or workflow failed (or a confirmation was refused); 2 bad usage or input
(flow, pattern, name, workflow id, parameter); 3 the store could not be reached
or used; 130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, NoReturn, TypeVar, cast

import anyio
import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from .._concurrency import first_exception
from .._runner import DEFAULT_PREFIX
from ..errors import AstepsError, FlowError, InvalidStepName, StoreError
from ._output import printable

EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 1, 2, 3

out = Console()
err = Console(stderr=True)

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` to stderr, unwrapped and escaped, and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(printable(message))}", soft_wrap=True)
    sys.exit(code)


class Interruption:
    """SIGINT and SIGTERM while a command runs.

    The first signal stops the command: it is cancelled, or, for a command that
    stops itself (``rerun``), ``stop`` is set and the command finishes its
    summary. Later signals only print ``later``: a clean stop always finishes.
    """

    def __init__(self, *, cancels: bool = True, later: str = "stopping…") -> None:
        self.cancels = cancels
        self.later = later
        self.signum: int | None = None
        self.stop: anyio.Event | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports it: 130 SIGINT, 143 SIGTERM."""
        return 128 + (self.signum or signal.SIGINT)

    async def watch(self, signals: AsyncIterator[int], scope: anyio.CancelScope) -> None:
        async for signum in signals:
            if self.signum is not None:
                err.print(f"[yellow]{escape(self.later)}[/]")
                continue
            self.signum = signum
            err.print(
                "[yellow]interrupted: finishing cleanly (in-flight work is cancelled, "
                "nothing unfinished is marked done)[/]"
            )
            assert self.stop is not None
            self.stop.set()
            if self.cancels:
                scope.cancel()


def run_async(
    fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, interruption: Interruption | None = None
) -> T:
    """Run a command's coroutine; asteps errors become a message and an exit code.

    SIGINT or SIGTERM cancels it (exit 130 or 143), unless an ``interruption``
    that does not cancel is given: then the command sees ``interruption.stop``
    set and ends on its own.
    """
    interruption = interruption or Interruption()
    try:
        try:
            result = anyio.run(_with_signals, fn, args, interruption)
        except ExceptionGroup as group:  # from a task group: report its first error
            raise first_exception(group) from None
    except (FlowError, InvalidStepName) as exc:
        fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    except AstepsError as exc:
        fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:  # before the signal handlers were in place
        fail("interrupted; steps cut short were not marked done", 128 + signal.SIGINT)
    if interruption.signum is not None and interruption.cancels:
        fail("interrupted; steps cut short were not marked done", interruption.exit_code)
    return cast(T, result)


async def _with_signals(
    fn: Callable[..., Coroutine[Any, Any, T]], args: tuple[Any, ...], interruption: Interruption
) -> T | None:
    result: T | None = None
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        interruption.stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(interruption.watch, signals, tg.cancel_scope)
            result = await fn(*args)
            tg.cancel_scope.cancel()
    return result


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
    handler.addFilter(_printable_record)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    if verbose < 2:
        logging.getLogger("botocore").setLevel(logging.WARNING)


def _printable_record(record: logging.LogRecord) -> bool:
    """Log messages carry ids and errors from input: escape them like any output."""
    message = record.getMessage()
    if not message.isprintable():
        record.msg, record.args = printable(message), None
    return True


def guarded(fn: Callable[..., T], *args: Any) -> T:
    """Call a validation; a bad flow, name or pattern exits 2 with its message."""
    try:
        return fn(*args)
    except (FlowError, InvalidStepName) as exc:
        fail(str(exc), EXIT_USAGE)
