"""The ``asteps`` command group, and running a command: its exit code, its
signals, its refusals.

Results go to stdout, progress and logs to stderr. Exit codes: 0 success; 1 a
step or workflow failed (or a confirmation was refused); 2 bad usage or input
(flow, pattern, name, workflow id, parameter; an SWF domain not set up); 3 the
store or SWF could not be reached or used; 130 interrupted by Ctrl-C (SIGINT),
143 by SIGTERM.

Each command's output and logging (text or JSON, ``-v``, ``--otel``) is set up
when it starts, from its options, by :mod:`asteps.cli._setup`; the options
the commands share are in :mod:`asteps.cli._options`, a batch's retry file in
:mod:`asteps.cli._retry`. The command modules take all of it from here.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar, cast

import anyio
import click

from .._concurrency import leaves
from .._names import DEFAULT_PREFIX
from ..errors import (
    AstepsError,
    ClaimsNotSupported,
    FlowError,
    InvalidName,
    StoreError,
    SwfError,
    SwfNotSetUp,
)
from ._options import (
    FiniteFloat,
    ShardType,
    exclusive_options,
    flow_version_option,
    json_option,
    log_format_option,
    otel_option,
    param_option,
    pattern_options,
    shard_option,
    store_option,
)
from ._output import emit_json
from ._retry import finish_batch, report_unsaved_ids, save_retry_ids
from ._setup import (
    ERROR_LABEL,
    EXIT_FAILED,
    EXIT_STORE,
    EXIT_USAGE,
    WARNING_LABEL,
    JsonFormatter,
    choices,
    err,
    fail,
    filter_batch_logs,
    json_logs,
    out,
    set_up,
    tell,
)

__all__ = [
    "ERROR_LABEL",
    "EXIT_FAILED",
    "EXIT_STORE",
    "EXIT_USAGE",
    "WARNING_LABEL",
    "FiniteFloat",
    "Interruption",
    "JsonFormatter",
    "ShardType",
    "emit_json",
    "err",
    "exclusive_options",
    "fail",
    "filter_batch_logs",
    "finish_batch",
    "flow_version_option",
    "guarded",
    "json_logs",
    "json_option",
    "log_format_option",
    "main",
    "otel_option",
    "out",
    "param_option",
    "pattern_options",
    "prefix_option",
    "report_unsaved_ids",
    "run_async",
    "save_retry_ids",
    "shard_option",
    "store_option",
    "tell",
]

T = TypeVar("T")

SAME_STOP_WITHIN = 1.0
"""Seconds after the first signal in which another counts as the same stop:
some process managers send two for one (a terminal's SIGINT to the whole
process group, then the manager's own SIGTERM to its children)."""


class Interruption:
    """SIGINT and SIGTERM while a command runs.

    The first signal stops the command and prints ``first``: the command is
    cancelled, or, for a command that stops itself (``rerun``, a draining SWF
    worker), ``stop`` is set and the command finishes on its own. Later signals
    only print ``later``: a clean stop always finishes. With
    ``second_stops_now``, the second signal also sets ``stop_now``, for a
    command whose clean stop can be cut short without losing anything (the
    SWF worker hands its running flows back to SWF at once instead of waiting
    out its drain); a third only prints. A signal within ``SAME_STOP_WITHIN``
    seconds of the first is taken for the same stop, and says so.
    """

    def __init__(
        self,
        *,
        cancels: bool = True,
        first: str = (
            "interrupted: finishing cleanly (in-flight work is cancelled, "
            "nothing unfinished is marked done)"
        ),
        later: str = "stopping…",
        second_stops_now: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cancels = cancels
        self.first = first
        self.later = later
        self.second_stops_now = second_stops_now
        self.clock = clock
        self.signum: int | None = None
        self.first_at = 0.0
        self.stop: anyio.Event | None = None
        self.stop_now: anyio.Event | None = None

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number, as a shell reports it: 130 SIGINT, 143 SIGTERM."""
        return 128 + (self.signum or signal.SIGINT)

    async def watch(self, signals: AsyncIterator[int], scope: anyio.CancelScope) -> None:
        async for signum in signals:
            if self.signum is not None:
                if self.second_stops_now and self.clock() - self.first_at < SAME_STOP_WITHIN:
                    tell(
                        f"a second signal within {SAME_STOP_WITHIN:g} s of the first is taken "
                        "for the same stop; send another to stop now",
                        logging.WARNING,
                        style="yellow",
                    )
                    continue
                tell(self.later, logging.WARNING, style="yellow")
                if self.second_stops_now:
                    assert self.stop_now is not None
                    self.stop_now.set()
                continue
            self.signum, self.first_at = signum, self.clock()
            tell(self.first, logging.WARNING, style="yellow")
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

    def exit_code(exc: AstepsError) -> int:
        if isinstance(exc, (FlowError, InvalidName, SwfNotSetUp, ClaimsNotSupported)):
            return EXIT_USAGE
        if isinstance(exc, (StoreError, SwfError)):
            return EXIT_STORE
        return EXIT_FAILED

    failures: list[AstepsError] = []
    try:
        try:
            result = anyio.run(_with_signals, fn, args, interruption)
        except* AstepsError as group:
            # The edge, where task groups are unwrapped: each failure is said
            # (two tasks can fail at once), the first decides the exit code.
            # Anything else in the group (a bug) goes on, with its traceback.
            failures = [exc for exc in leaves(group) if isinstance(exc, AstepsError)]
            for exc in failures:
                tell(str(exc), logging.ERROR, label=ERROR_LABEL)
    except KeyboardInterrupt:  # before the signal handlers were in place
        fail("interrupted; steps cut short were not marked done", 128 + signal.SIGINT)
    if failures:
        sys.exit(exit_code(failures[0]))
    if interruption.signum is not None and interruption.cancels:
        fail("interrupted; steps cut short were not marked done", interruption.exit_code)
    return cast(T, result)


async def _with_signals(
    fn: Callable[..., Coroutine[Any, Any, T]], args: tuple[Any, ...], interruption: Interruption
) -> T | None:
    result: T | None = None
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        interruption.stop, interruption.stop_now = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(interruption.watch, signals, tg.cancel_scope)
            result = await fn(*args)
            tg.cancel_scope.cancel()
    return result


def prefix_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--prefix``: the marker prefix template (the other shared options are in
    :mod:`asteps.cli._options`)."""
    return click.option(
        "--prefix",
        default=DEFAULT_PREFIX,
        show_default=True,
        help="Marker prefix template; sees {workflow_id}.",
    )(fn)


def guarded(fn: Callable[..., T], *args: Any) -> T:
    """Call a validation; a bad flow, name or pattern exits 2 with its message."""
    try:
        return fn(*args)
    except (FlowError, InvalidName) as exc:
        fail(str(exc), EXIT_USAGE)


# -- the group ---------------------------------------------------------------------


class _Command(click.Command):
    """A command of asteps: its output is set up, from its options, as it starts."""

    def invoke(self, ctx: click.Context) -> Any:
        set_up(ctx)
        return super().invoke(ctx)


class _Group(click.Group):
    """A group of asteps commands (``steps``, ``swf``)."""

    command_class = _Command


class _Commands(_Group):
    """The asteps group. With ``--log-format json``, click's own usage errors
    are log records too, so that stderr stays one JSON object per line.

    The option is eager, so it acts before the other options are checked; but
    a command line click cannot parse at all (an unknown option, an option
    without its value, an argument too many) fails before any option acts.
    For those, the group looks for the option in the raw command line first.
    """

    group_class = _Group

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        choices(ctx).json_asked = _asks_for_json(args)
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:
            try:
                _report_usage_error(ctx, exc)
            finally:
                ctx.close()  # click never enters, so never closes, a context it refused

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            _report_usage_error(ctx, exc)


def _asks_for_json(args: Sequence[str]) -> bool:
    """Whether a command line holds ``--log-format json`` (or ``=json``), read
    before click parses it: a line click cannot parse never reaches the option."""
    for token, following in zip(args, [*args[1:], ""], strict=True):
        if token == "--":
            return False
        if token == "--log-format=json" or (token == "--log-format" and following == "json"):
            return True
    return False


def _report_usage_error(ctx: click.Context, exc: click.ClickException) -> NoReturn:
    """Re-raise ``exc`` for click to print, or, when JSON logs were asked for,
    log it as one record and exit with its code."""
    if isinstance(exc, click.NoSuchOption) and exc.option_name in ("-v", "--verbose"):
        # the group's option, given after the command: say where it goes
        exc = click.UsageError(
            f"No such option: {exc.option_name} (-v and -vv go before the command: "
            "asteps -v run ...)",
            exc.ctx,
        )
    chosen = choices(ctx)
    if chosen.json_asked:
        chosen.log_format = "json"
    if chosen.log_format != "json":
        raise exc
    output = set_up(ctx, telemetry=False)
    message = exc.format_message()
    if isinstance(exc, click.UsageError):
        if exc.ctx is not None:
            path = exc.ctx.command_path
        else:  # the parser does not say which command: the one being started
            path = " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
        message += f" (see '{path} --help')"
    output.tell(message, logging.ERROR, label=ERROR_LABEL)
    raise click.exceptions.Exit(exc.exit_code) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asteps")
@click.option("-v", "--verbose", count=True, help="-v: INFO logs, -vv: DEBUG (to stderr).")
def main(verbose: int) -> None:
    """asteps: named steps that run once per workflow, forced or skipped by pattern.

    \b
    Exit codes: 0 ok, 1 a step or workflow failed, 2 bad usage or input,
    3 store or SWF unreachable or unusable, 130 interrupted (143 by SIGTERM).
    """
    choices(click.get_current_context()).verbose = verbose
