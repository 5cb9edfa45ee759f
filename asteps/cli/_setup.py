"""Output and logging for one command, set up from its options.

A command talks through one :class:`Output`: a console for results (stdout),
one for the operator (stderr), and the process's logs, through one handler on
the root logger, text or JSON, at the level ``-v`` chose. With ``--otel`` the
command's traces and metrics are exported too (:mod:`asteps.cli._otel`).

Why it works this way:

- The options only record what they chose (:class:`Choices`) while click
  parses the command line. The output is built once, from all of them, when
  the command starts (:func:`set_up`), or when its command line is refused,
  so that the refusal is written as asked: nothing is set up at import, and
  nothing reads the logging configuration back to learn the mode.
- It belongs to the command line's click context, and is taken down when that
  context closes, however the command ends (a return, ``sys.exit``, the
  ``SystemExit`` of Ctrl-C): telemetry is flushed, the handler removed and
  the loggers' levels restored. Two commands run in one process (a test, a
  program calling ``main``) share nothing.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, NoReturn, Self

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.text import Text

from ..errors import StoreError
from ._output import printable

EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 1, 2, 3

ERROR_LABEL = "[bold red]error:[/]"
WARNING_LABEL = "[yellow]warning:[/]"

CLI_LOGGER = "asteps.cli"
"""The logger of the operator's lines (:func:`tell`) when logs are JSON."""

_CHOICES = "asteps.output.choices"
_OUTPUT = "asteps.output"


@dataclass
class Choices:
    """What a command line chose for its output, as click parses it."""

    verbose: int = 0
    """``-v`` (INFO) or ``-vv`` (DEBUG, botocore's too); WARNING without."""
    log_format: Literal["text", "json"] = "text"
    json_asked: bool = False
    """``--log-format json`` is in the raw command line: a line click cannot
    parse is refused before the option acts."""
    otel: bool = False


def choices(ctx: click.Context) -> Choices:
    """The choices of the command line that ``ctx`` belongs to (one per call of ``main``)."""
    meta = ctx.find_root().meta
    if _CHOICES not in meta:
        meta[_CHOICES] = Choices()
    chosen: Choices = meta[_CHOICES]
    return chosen


class Output:
    """The consoles and the logs of one command: text for people, or JSON lines.

    Used as a context manager, it sends the process's logs through its
    handler, at the level ``verbose`` chose, and puts everything back as it
    was on exit.
    """

    def __init__(self, *, json: bool = False, verbose: int = 0) -> None:
        self.json = json
        self.verbose = verbose
        self.out = Console()
        self.err = Console(stderr=True)
        self.handler = _json_handler() if json else _text_handler(self.err)
        self._levels: dict[str, int] = {}  # each logger set, and its level before

    @property
    def level(self) -> int:
        """The root logger's level: WARNING, INFO (``-v``) or DEBUG (``-vv``)."""
        return (logging.WARNING, logging.INFO, logging.DEBUG)[min(self.verbose, 2)]

    def __enter__(self) -> Self:
        levels = {"": self.level}
        if self.verbose < 2:
            levels["botocore"] = logging.WARNING
        if self.json:
            # The operator's lines, which text always shows, are always records.
            levels[CLI_LOGGER] = min(self.level, logging.INFO)
        for name, level in levels.items():
            logger = logging.getLogger(name or None)
            self._levels[name] = logger.level
            logger.setLevel(level)
        logging.getLogger().addHandler(self.handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        logging.getLogger().removeHandler(self.handler)
        for name, level in self._levels.items():
            logging.getLogger(name or None).setLevel(level)
        self._levels.clear()

    def tell(
        self,
        message: str,
        level: int,
        *,
        label: str | None = None,
        style: str | None = None,
        **fields: str,
    ) -> None:
        """See :func:`tell`."""
        if self.json:
            text = f"{Text.from_markup(label).plain} {message}" if label else message
            logging.getLogger(CLI_LOGGER).log(level, "%s", text, extra=fields)
            return
        text = escape(printable(message))
        if style is not None:
            text = f"[{style}]{text}[/]"
        self.err.print(f"{label} {text}" if label else text, soft_wrap=True, highlight=False)

    def fail(self, message: str, code: int) -> NoReturn:
        """See :func:`fail`."""
        self.tell(message, logging.ERROR, label=ERROR_LABEL)
        sys.exit(code)

    def filter_batch_logs(self) -> None:
        """For a batch of workflows: see :func:`filter_batch_logs`."""
        quiet = self.verbose == 0

        def keep(record: logging.LogRecord) -> bool:
            if not record.name.startswith("asteps") or record.name == CLI_LOGGER:
                return True  # the operator's own lines (tell) always show
            if quiet and record.levelno < logging.ERROR:
                return False
            args = record.args if isinstance(record.args, tuple) else ()
            return not any(isinstance(arg, StoreError) for arg in args)

        self.handler.addFilter(keep)


def set_up(ctx: click.Context, *, telemetry: bool = True) -> Output:
    """The output of the command that ``ctx`` runs, built at the first call
    from what its options chose, and kept until the command line's context
    closes; with ``--otel`` (and ``telemetry``), the export of its traces
    and metrics starts too, and is flushed when it ends.

    Exits 2 when ``--otel`` is given without the OpenTelemetry SDK.
    """
    root = ctx.find_root()
    output: Output | None = root.meta.get(_OUTPUT)
    if output is not None:
        return output
    chosen = choices(ctx)
    output = root.with_resource(Output(json=chosen.log_format == "json", verbose=chosen.verbose))
    root.meta[_OUTPUT] = output
    if telemetry and chosen.otel:
        from ._otel import export_otlp

        try:
            shutdown = export_otlp(
                warn=lambda message: output.tell(message, logging.WARNING, label=WARNING_LABEL)
            )
        except ImportError as exc:
            output.fail(str(exc), EXIT_USAGE)

        def flush() -> None:
            """Send what was recorded, within the export timeout; say what was dropped."""
            dropped = shutdown()
            if dropped is not None:
                output.tell(dropped, logging.WARNING, label=WARNING_LABEL)

        # Called before the output is taken down: the warning is still written.
        root.call_on_close(flush)
    return output


def current() -> Output:
    """The running command's output; outside any command (a helper called by
    a test, say), text on fresh consoles, with logging left alone.

    Click finds the running command per thread: call this in the command's
    own thread (the event loop's), not in a worker thread.
    """
    ctx = click.get_current_context(silent=True)
    output: Output | None = None if ctx is None else ctx.find_root().meta.get(_OUTPUT)
    return output if output is not None else Output()


def out() -> Console:
    """The running command's console for results (stdout)."""
    return current().out


def err() -> Console:
    """The running command's console for the operator (stderr): progress bars."""
    return current().err


def json_logs() -> bool:
    """Whether the running command logs JSON lines (``--log-format json``)."""
    return current().json


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
    current().tell(message, level, label=label, style=style, **fields)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` to stderr, unwrapped and escaped, and exit with ``code``."""
    current().fail(message, code)


def filter_batch_logs() -> None:
    """For a command that runs a batch of workflows, from now until it ends.

    A store failure stops the batch and is said once, in the summary: the
    runner's log line per workflow that hit it is dropped. Without ``-v``, one
    WARNING per failed step would bury the progress bar: the summary lists the
    failures, and ``-v`` brings those lines back.
    """
    current().filter_batch_logs()


def _text_handler(console: Console) -> logging.Handler:
    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_printable_record)
    return handler


def _json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def _printable_record(record: logging.LogRecord) -> bool:
    """Log messages carry ids and errors from input: escape them like any output."""
    message = record.getMessage()
    if not message.isprintable():
        record.msg, record.args = printable(message), None
    return True


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
