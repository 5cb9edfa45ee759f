"""A batch's end (``rerun``, ``swf submit``): the ids to retry in a file that
``--ids`` takes back, and the summary beside it."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
from rich.table import Table

from ..errors import describe
from ._output import emit_json
from ._setup import ERROR_LABEL, out, tell


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
        out().print(table(retry_file))
    if problem is not None:
        tried = path if path is not None or problem.filename is None else Path(problem.filename)
        report_unsaved_ids(tried, problem, ids)


def save_retry_ids(
    ids: Sequence[str], path: Path | None, kind: str
) -> tuple[Path | None, OSError | None]:
    """Write the ids to retry, one a line, to ``path`` (default a new
    ``asteps-<kind>-<time>-<pid>.txt``, see :func:`create_new`): the file
    written, or the error that stopped it.

    Ids are written back as they came (``surrogateescape``), so that a line
    that was not UTF-8 fails the same way when the file is taken back.
    """
    if not ids:
        return None, None
    made: Path | None = None
    try:
        if path is None:
            path = made = create_new(f"asteps-{kind}-{file_stamp()}", ".txt")
        path.write_bytes("".join(f"{wid}\n" for wid in ids).encode("utf-8", "surrogateescape"))
    except OSError as exc:
        if exc.filename is None and path is not None:
            exc.filename = str(path)  # which file, for the message
        # Empty or cut short, it is not a list of ids to take back: the ids go
        # to stderr instead. A file asteps made goes; one the user named is
        # emptied (never removed: it may be a device).
        with suppress(OSError):
            if made is not None:
                made.unlink(missing_ok=True)
            elif path is not None and path.is_file():
                os.truncate(path, 0)
        return None, exc
    return path, None


def file_stamp() -> str:
    """The time and the process id, for the default names: two reruns started
    in the same second in the same directory have their own."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def create_new(stem: str, suffix: str) -> Path:
    """A new empty file ``<stem><suffix>`` (else ``<stem>-2<suffix>``, and
    so on), created here (``O_EXCL``): never a file that was there, even
    one another process made an instant before."""
    for n in range(1, 1000):
        path = Path(stem + ("" if n == 1 else f"-{n}") + suffix)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "every name is taken", f"{stem}{suffix}")


def report_unsaved_ids(
    path: Path | None,
    problem: OSError,
    ids: Sequence[str],
    *,
    saved: int = 0,
    cut: bool = False,
) -> None:
    """The retry file could not be written (after ``saved`` ids, if any): say
    so, what the file holds, and give the ids not in it on stderr."""
    if saved:
        holds = f"it holds the first {saved:,} ids to retry"
        if cut:
            holds += ", and its last line is cut short (not an id: delete it before --ids)"
        said = f"could not write on to the retry file {path} ({describe(problem)}): {holds}"
        tell(f"{said}; the other ids to retry:", logging.ERROR, label=ERROR_LABEL)
    else:
        tell(
            f"could not write the retry file {path} ({describe(problem)}); the ids to retry:",
            logging.ERROR,
            label=ERROR_LABEL,
        )
    for wid in ids:
        tell(wid, logging.ERROR, workflow_id=wid)
