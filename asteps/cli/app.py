"""The ``asteps`` command group, its consoles and the options commands share.

Results go to stdout, progress and logs to stderr. Exit codes: 0 success; 1 a
step or workflow failed (or a confirmation was refused); 2 bad usage or input
(flow, pattern, name, workflow id, parameter; an SWF domain not set up); 3 the
store or SWF could not be reached or used; 130 interrupted by Ctrl-C (SIGINT),
143 by SIGTERM.

Every command takes ``--log-format json`` (:func:`log_format_option`); those
that run flows take ``--otel`` (:func:`otel_option`). Both act while the
command line is parsed, before the command runs, so a command needs nothing
but the decorator.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import anyio
import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._claims import DEFAULT_LEASE, MIN_LEASE
from .._concurrency import leaves
from .._names import DEFAULT_PREFIX
from .._shards import MAX_SHARDS, Shard, parse_shard
from ..errors import (
    AstepsError,
    ClaimsNotSupported,
    FlowError,
    InvalidStepName,
    StoreError,
    SwfError,
    SwfNotSetUp,
    describe,
)
from ._output import printable

EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 1, 2, 3

out = Console()
err = Console(stderr=True)

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` to stderr, unwrapped and escaped, and exit with ``code``."""
    tell(message, logging.ERROR, label="[bold red]error:[/]")
    sys.exit(code)


ERROR_LABEL = "[bold red]error:[/]"


def tell(
    message: str,
    level: int,
    *,
    label: str | None = None,
    style: str | None = None,
    **fields: str,
) -> None:
    """A line for the operator on stderr, after a rich ``label``, in a rich
    ``style``; with ``--log-format json`` a log record of ``level`` with the same
    words and ``fields`` (``workflow_id``, ``step``, ``status``)."""
    if json_logs():
        text = f"{Text.from_markup(label).plain} {message}" if label else message
        logging.getLogger("asteps.cli").log(level, "%s", text, extra=fields)
        return
    text = escape(printable(message))
    if style is not None:
        text = f"[{style}]{text}[/]"
    err.print(f"{label} {text}" if label else text, soft_wrap=True, highlight=False)


class Interruption:
    """SIGINT and SIGTERM while a command runs.

    The first signal stops the command and prints ``first``: the command is
    cancelled, or, for a command that stops itself (``rerun``, a draining SWF
    worker), ``stop`` is set and the command finishes on its own. Later signals
    only print ``later``: a clean stop always finishes.
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
    ) -> None:
        self.cancels = cancels
        self.first = first
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
                tell(self.later, logging.WARNING, style="yellow")
                continue
            self.signum = signum
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
        if isinstance(exc, (FlowError, InvalidStepName, SwfNotSetUp, ClaimsNotSupported)):
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
        interruption.stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(interruption.watch, signals, tg.cancel_scope)
            result = await fn(*args)
            tg.cancel_scope.cancel()
    return result


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- shared options ------------------------------------------------------------


class FiniteFloat(click.FloatRange):
    """A float option in a range, never NaN or infinity: ``nan`` compares false
    with every bound, so click's own ``FloatRange`` lets it through. Every float
    option of the CLI uses this type."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):  # before the range, which NaN would pass
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class ShardType(click.ParamType[Shard]):
    """``K/N``: shard K (0-based) of N, as :func:`asteps._shards.parse_shard` reads it."""

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Shard):
            return value
        try:
            return parse_shard(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def shard_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--shard K/N``: only the ids of shard K of N (rerun, swf submit)."""
    return click.option(
        "--shard",
        type=ShardType(),
        default=None,
        metavar="K/N",
        help="Only the ids in shard K of N, K counted from 0 (0/4 to 3/4): an id's shard is "
        "a stable hash of it, so N runs with K = 0 to N-1 (e.g. $JOB_COMPLETION_INDEX, "
        f"$AWS_BATCH_JOB_ARRAY_INDEX) cover each id once. N is at most {MAX_SHARDS:,}.",
    )(fn)


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


def flow_version_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--flow-version",
        default=None,
        metavar="TEXT",
        help="The version written in every marker; steps with rerun_on_new_version "
        "run again where a marker says another one.",
    )(fn)


def param_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--param", "params", multiple=True, metavar="KEY=VALUE", help="Flow parameter."
    )(fn)


MAX_LEASE = 86400.0
"""The longest lease the CLI takes (a day): a claim whose holder died blocks
its step for a lease."""


def exclusive_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--exclusive`` and ``--lease SECONDS``, for the runners a command builds."""
    fn = click.option(
        "--lease",
        default=DEFAULT_LEASE,
        show_default=True,
        type=FiniteFloat(min=MIN_LEASE, max=MAX_LEASE),
        help="Seconds a claim on an exclusive step holds, renewed every third of it; "
        "a claim whose holder died is taken over after it (also for the steps the "
        "flow itself makes exclusive).",
    )(fn)
    return click.option(
        "--exclusive",
        is_flag=True,
        help="Claim every step in the store before running it, so that no other "
        "runner (another rerun, a worker, a service) runs it at the same time.",
    )(fn)


def log_format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-format text|json``: the command's logs on stderr, for people or pipelines."""
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        expose_value=False,
        is_eager=True,  # before the other options, whose errors are then logged alike
        callback=_set_log_format,
        help="Logs on stderr: human text, or one JSON object per line.",
    )(fn)


def otel_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--otel``: send traces and metrics over OTLP/HTTP while the command runs."""
    return click.option(
        "--otel",
        is_flag=True,
        expose_value=False,
        callback=_start_otel,
        help="Send traces and metrics over OTLP/HTTP, configured by the OTEL_* "
        "environment variables (service name: asteps unless OTEL_SERVICE_NAME). "
        "Needs asteps[otel].",
    )(fn)


def _set_log_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value == "json":
        _use_json_logs()
    return value


def _use_json_logs() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # The level stays the one -v chose; only the handler changes. The
    # operator's lines, which text mode always shows, are always records.
    level = logging.getLogger().level
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("asteps.cli").setLevel(min(level, logging.INFO))


def _asks_for_json(args: Sequence[str]) -> bool:
    """Whether a command line holds ``--log-format json`` (or ``=json``), read
    before click parses it: a line click cannot parse never reaches the option."""
    for token, following in zip(args, [*args[1:], ""], strict=True):
        if token == "--":
            return False
        if token == "--log-format=json" or (token == "--log-format" and following == "json"):
            return True
    return False


def _start_otel(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        from .._telemetry import export_otlp

        try:
            shutdown = export_otlp()
        except ImportError as exc:
            fail(str(exc), EXIT_USAGE)
        # The context closes however the command ends: return, failure, or the
        # SystemExit of Ctrl-C (run_async), so what was recorded is sent.
        ctx.call_on_close(lambda: _flush_telemetry(shutdown))
    return value


def _flush_telemetry(shutdown: Callable[[], str | None]) -> None:
    """Send what ``--otel`` recorded, within the export timeout; say what was dropped."""
    dropped = shutdown()
    if dropped is not None:
        tell(dropped, logging.WARNING, label="[yellow]warning:[/]")


def json_logs() -> bool:
    """Whether logs go out as JSON lines (``--log-format json``)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, then ``workflow_id``, ``step``, ``status`` and ``decision``
    when the record carries them (``extra=``), and ``exception`` if any."""

    FIELDS = ("workflow_id", "step", "status", "decision")

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self.FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        # ASCII only: no character of a message (U+2028 included) can split the line.
        return json.dumps(data, default=str, ensure_ascii=True)


class _Commands(click.Group):
    """The asteps group. With ``--log-format json``, click's own usage errors
    are log records too, so that stderr stays one JSON object per line.

    The option is eager, so it acts before the other options are checked; but
    a command line click cannot parse at all (an unknown option, an option
    without its value, an argument too many) fails before any option acts.
    For those, the group looks for the option in the raw command line first.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_JSON_ASKED] = _asks_for_json(args)
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:
            _report_usage_error(ctx, exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            _report_usage_error(ctx, exc)


_JSON_ASKED = "asteps.json_logs_asked"


def _report_usage_error(ctx: click.Context, exc: click.ClickException) -> NoReturn:
    """Re-raise ``exc`` for click to print, or, when JSON logs were asked for,
    log it as one record and exit with its code."""
    if not (json_logs() or ctx.meta.get(_JSON_ASKED)):
        raise exc
    if not json_logs():
        _use_json_logs()
    message = exc.format_message()
    if isinstance(exc, click.UsageError):
        if exc.ctx is not None:
            path = exc.ctx.command_path
        else:  # the parser does not say which command: the one being started
            path = " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
        message += f" (see '{path} --help')"
    tell(message, logging.ERROR, label=ERROR_LABEL)
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


# -- retry files -----------------------------------------------------------------


async def finish_batch(
    data: dict[str, Any],
    table: Callable[[Path | None], Table],
    ids: Sequence[str],
    path: Path | None,
    kind: str,
    as_json: bool,
) -> None:
    """A batch's end: the ids to retry in a file (``save_retry_ids``, in a
    worker thread: a slow or stuck file system must not stop the event loop,
    and with it the signal handlers), then the summary on stdout, as JSON
    (``data`` and ``retry_file``) or as the ``table`` built for the file
    written. If the file cannot be written after all, the ids go to stderr
    instead."""
    saved = await anyio.to_thread.run_sync(save_retry_ids, ids, path, kind)
    _show_batch(data, table, ids, path, saved, as_json)


def _show_batch(
    data: dict[str, Any],
    table: Callable[[Path | None], Table],
    ids: Sequence[str],
    path: Path | None,
    saved: tuple[Path | None, OSError | None],
    as_json: bool,
) -> None:
    retry_file, problem = saved
    if as_json:
        emit_json({**data, "retry_file": str(retry_file) if retry_file else None})
    else:
        out.print(table(retry_file))
    if problem is not None:
        report_unsaved_ids(path, problem, ids)


def save_retry_ids(
    ids: Sequence[str], path: Path | None, kind: str
) -> tuple[Path | None, OSError | None]:
    """Write the ids to retry, one a line, to ``path`` (default
    ``asteps-<kind>-<time>.txt``): the file written, or the error that stopped it.

    Ids are written back as they came (``surrogateescape``), so that a line
    that was not UTF-8 fails the same way when the file is taken back.
    """
    if not ids:
        return None, None
    if path is None:
        path = Path(f"asteps-{kind}-{time.strftime('%Y%m%d-%H%M%S')}.txt")
    try:
        path.write_bytes("".join(f"{wid}\n" for wid in ids).encode("utf-8", "surrogateescape"))
    except OSError as exc:
        return None, exc
    return path, None


def report_unsaved_ids(path: Path | None, problem: OSError, ids: Sequence[str]) -> None:
    """The retry file could not be written: say so, and give the ids on stderr."""
    tell(
        f"could not write the retry file {path} ({describe(problem)}); the ids to retry:",
        logging.ERROR,
        label=ERROR_LABEL,
    )
    for wid in ids:
        tell(wid, logging.ERROR, workflow_id=wid)
