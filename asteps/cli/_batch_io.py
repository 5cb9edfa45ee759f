"""What the batch commands (``rerun``, ``swf submit``) share: the retry file,
streamed as ids fail, the resume point, counting ids, saying where to go on."""

from __future__ import annotations

import logging
import os
import queue
import shlex
import stat
import threading
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import IO

import anyio

from .. import BatchSummary, Shard
from .._ids import numbered_ids, stream_chunks, text_of
from .._names import validate_workflow_id
from .._resume import MAX_RESUME_BYTES, ResumeError, ResumePoint, ResumeSource, SourceKind
from ..errors import InvalidName, describe
from ._retry import create_new, file_stamp, report_unsaved_ids
from .app import ERROR_LABEL, EXIT_USAGE, fail, tell


class RetryFile:
    """The ids to retry, one a line, written by a thread as they come: the
    event loop never waits on the disk, and no id is kept in memory once
    written. The file is created with the first id (no ids, no file).

    Without a ``path``, the file is ``asteps-failed-<time>-<pid>.txt``,
    renamed ``asteps-unfinished-<time>-<pid>.txt`` by ``close(stopped=True)``;
    both are new files (see :func:`create_new`), never another rerun's. Ids are
    written back as they came (``surrogateescape``), so that a line that was
    not UTF-8 fails the same way when the file is taken back. If the file
    cannot be written, the ids from there on are kept to be shown instead.

    With ``append=True`` (a run going on from a resume point) a ``path`` that
    exists is added to, not written over: it is most likely the retry file of
    the run resumed, whose failed ids are there and nowhere else.
    """

    def __init__(self, path: Path | None, *, append: bool = False) -> None:
        self.given = path
        self.append = append
        self._stamp = file_stamp()
        self.path = path if path is not None else Path(f"asteps-failed-{self._stamp}.txt")
        self.written = 0
        """The ids in the file, whole lines."""
        self.cut = False
        """Whether the file ends with a line cut short (it could not be cut back)."""
        self._size = 0
        self.problem: OSError | None = None
        self.unsaved: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="asteps retry file")
        self._thread.start()

    def add(self, wid: str) -> None:
        """Write ``wid`` (from the event loop: it only queues it)."""
        self._queue.put(wid)

    def close(self, *, stopped: bool = False) -> Path | None:
        """Write what is queued and end the thread (blocking: call it in a
        worker thread); the file written, or None (no ids, or it failed)."""
        self._queue.put(None)
        self._thread.join()
        if self.written == 0 or self.problem is not None:
            return None
        if stopped and self.given is None:
            try:
                target = create_new(f"asteps-unfinished-{self._stamp}", ".txt")
            except OSError:
                return self.path
            try:
                os.replace(self.path, target)  # onto the empty file just made
            except OSError:
                with suppress(OSError):
                    target.unlink()
                return self.path
            self.path = target
        return self.path

    def _write(self) -> None:
        fd: int | None = None
        try:
            while (wid := self._queue.get()) is not None:
                ids = [wid]
                while True:  # what came meanwhile, in one write
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)
                        break
                    ids.append(more)
                if self.problem is not None:
                    self.unsaved.extend(ids)
                    continue
                try:
                    if fd is None:
                        fd = self._open()
                    self._write_lines(fd, ids)
                except OSError as exc:
                    self.problem = exc
                    self.unsaved.extend(ids)
                    if fd is not None:
                        self._cut_back(fd)
        finally:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError as exc:  # a file system that says only now
                    if self.problem is None:
                        self.problem = exc
                        self.cut = True  # what it kept is not known: say so

    def _open(self) -> int:
        if self.given is None:
            self.path = create_new(f"asteps-failed-{self._stamp}", ".txt")
            return os.open(self.path, os.O_WRONLY)
        if not self.append:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            self._size = os.fstat(fd).st_size  # what a failed write is cut back to
            if self._size and os.pread(fd, 1, self._size - 1) != b"\n":
                self._write_bytes(fd, b"\n")  # its last line, ended: not joined to ours
        except OSError:
            os.close(fd)
            raise
        return fd

    def _write_lines(self, fd: int, ids: list[str]) -> None:
        """Write whole lines, however many writes it takes; counted once all are."""
        self._write_bytes(fd, "".join(f"{w}\n" for w in ids).encode("utf-8", "surrogateescape"))
        self.written += len(ids)

    def _write_bytes(self, fd: int, data: bytes) -> None:
        left = memoryview(data)
        while left:
            left = left[os.write(fd, left) :]
        self._size += len(data)

    def _cut_back(self, fd: int) -> None:
        """After a failed write, end the file with its last whole line: a cut
        line would be read back as another id. If it cannot be, say so."""
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            with suppress(OSError):
                self.cut = os.fstat(fd).st_size > self._size

    def report(self) -> None:
        """The file could not be written: say so, what it holds, and the ids not in it."""
        if self.problem is not None:
            report_unsaved_ids(
                self.path, self.problem, self.unsaved, saved=self.written, cut=self.cut
            )


def resume_path(retry: Path | None, *, dry_run: bool = False) -> Path:
    """Where a stopped rerun writes its resume point: beside ``--failed-file``
    (``F.resume.json``, or ``F.dry-run.resume.json`` for a dry run, which so
    never replaces a real run's), else a new ``asteps-resume-<time>-<pid>.json``,
    or ``asteps-dry-run-resume-<time>-<pid>.json`` for a dry run (created by
    this call)."""
    if retry is not None:
        return retry.with_name(retry.name + (".dry-run.resume.json" if dry_run else ".resume.json"))
    kind = "dry-run-resume" if dry_run else "resume"
    return create_new(f"asteps-{kind}-{file_stamp()}", ".json")


def save_resume_point(point: ResumePoint, path: Path) -> OSError | None:
    """Write ``point`` to ``path`` (a new file, then renamed: never half a
    point); the error that stopped it, if any."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(point.to_json(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        return exc
    return None


def check_retry_location(path: Path | None, ids_file: IO[bytes] | None = None) -> None:
    """The retry file must be writable before anything runs, not after, and
    must not be the ids file (nor must the resume point written beside it):
    it is written while the ids are read, and would cut them short."""
    target = path if path is not None else Path("asteps-failed.txt")
    if path is not None and ids_file is not None:
        for written, what in [
            (path, "--failed-file"),
            (resume_path(path), "the resume point"),
            (resume_path(path, dry_run=True), "the resume point"),
        ]:
            if _is_the_open_file(written, ids_file):
                fail(
                    f"{what} {str(written)!r} is the --ids file: it is written while the ids "
                    "are read, and would overwrite them; give another --failed-file",
                    EXIT_USAGE,
                )
    directory = target.parent
    if target.is_dir():
        problem = "is a directory"
    elif not directory.is_dir():
        problem = f"cannot be created: {str(directory)!r} is not a directory"
    elif not os.access(directory, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        problem = "is not writable"
    else:
        return
    where = f"--failed-file {str(target)!r}" if path is not None else "the working directory"
    fail(
        f"the retry file {problem} ({where}); give a writable --failed-file",
        EXIT_USAGE,
    )


def _is_the_open_file(path: Path, opened: IO[bytes]) -> bool:
    """Whether ``path`` names the file ``opened`` (a link to it too)."""
    try:
        mine = os.fstat(opened.fileno())
        theirs = os.stat(path)
    except (OSError, ValueError):  # no such file yet, or no file descriptor
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def count_ids(stream: IO[bytes], shard: Shard | None = None, *, start_line: int = 1) -> int | None:
    """How many ids a regular file holds (of ``shard``, if given: for the
    ETA), from ``start_line`` on, without moving the reader's position; None
    for a pipe."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    except (OSError, ValueError):
        return None
    numbered = numbered_ids(stream_chunks(stream, offset=offset))
    ids = (text_of(item) for line, item in numbered if line >= start_line)
    return sum(1 for wid in ids if shard is None or shard.holds(wid))


def go_on(stopped_at: str, next_line: int | None, ids_name: object) -> str:
    """Where reading the ids stopped (a batch's or a submit's ``stopped_at``
    and ``next_line``), and how to go on from there."""
    line = next_line
    if line is not None and isinstance(ids_name, str) and not ids_name.startswith("<"):
        return (
            f"at line {line:,} of {ids_name}: the ids from there on are not in the retry "
            f"file; go on with: tail -n +{line} {shlex.quote(ids_name)}"
        )
    if line is not None:
        return f"at line {line:,} of the ids: the ids from there on were not read"
    return f"{stopped_at}: the ids not yet read are not in the retry file"


def source_of(
    ids_file: IO[bytes] | None,
    store_url: str | None,
    prefix: str,
    shard: Shard | None,
    *,
    dry_run: bool,
) -> ResumeSource:
    """What this rerun reads its ids from, and runs them on, as a resume point
    records it."""
    shard_text = None if shard is None else str(shard)
    store = store_url or os.environ.get("ASTEPS_STORE") or "file:.asteps"
    kind: SourceKind = "all"
    name: str | None = None
    size = None
    if ids_file is not None:
        name = str(getattr(ids_file, "name", "-"))
        kind = "file"
        if name.startswith("<"):  # stdin: the same ids must be piped again
            kind, name = "stdin", None
        else:
            with suppress(OSError, ValueError):
                size = os.fstat(ids_file.fileno()).st_size
    return ResumeSource(
        kind=kind,
        dry_run=dry_run,
        ids_file=name,
        ids_size=size,
        store=store,
        prefix=prefix,
        shard=shard_text,
    )


def read_resume(path: Path, source: ResumeSource) -> ResumePoint:
    """The resume point in ``path``, written for ``source``; else exit 2 saying why."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_RESUME_BYTES + 1)
        point = ResumePoint.from_json(data, str(path))
        point.check(source)
    except ResumeError as exc:
        fail(f"--resume: {exc}", EXIT_USAGE)
    except OSError as exc:
        fail(f"--resume: cannot read {path}: {exc.strerror}", EXIT_USAGE)
    return point


async def save_resume(
    summary: BatchSummary,
    source: ResumeSource,
    point: ResumePoint | None,
    failed_file: Path | None,
) -> Path | None:
    """Write where a stopped rerun goes on from; the file, or None if it failed (said)."""
    ids = [wid for wid in summary.unfinished_ids if _valid(wid)]
    over = summary.stopped_at is None or (point is not None and point.over)
    new = ResumePoint(
        source=source,
        unfinished=ids,
        next_line=None if over else summary.next_line,
        listed_to=None if over else summary.listed_to,
        over=over,
    )
    try:
        path = await anyio.to_thread.run_sync(
            partial(resume_path, failed_file, dry_run=source.dry_run)
        )
    except OSError as exc:
        tell(f"could not create the resume point: {exc}", logging.ERROR, label=ERROR_LABEL)
        return None
    problem = await anyio.to_thread.run_sync(save_resume_point, new, path)
    if problem is not None:
        tell(
            f"could not write the resume point {path}: {problem}", logging.ERROR, label=ERROR_LABEL
        )
        return None
    if source.dry_run:
        tell(
            f"{path} is a dry run's resume point: it goes on planning with --dry-run "
            "(a real run refuses it: the ids it read were only planned, not run)",
            logging.WARNING,
            label="[yellow]note:[/]",
        )
    return path


async def retire_resume(used: Path, new: Path | None) -> None:
    """Remove the resume point a run went on from (``--resume``), used up:
    the run went on to the end (``new`` is None), or stopped and wrote
    ``new``, which holds everything the used one still had to do. Left in
    place, a later ``--resume`` of it would run its ids again, forced steps
    and all."""
    try:
        removed = await anyio.to_thread.run_sync(_remove_unless_same, used, new)
    except OSError as exc:
        tell(
            f"could not remove the resume point {used}, used up by this run "
            f"({describe(exc)}): do not go on from it again",
            logging.WARNING,
            label="[yellow]warning:[/]",
        )
        return
    if removed:
        done = "this run went on from it to the end" if new is None else f"{new} replaces it"
        tell(f"{used} is used up ({done}): removed", logging.WARNING, label="[yellow]note:[/]")


def _remove_unless_same(used: Path, new: Path | None) -> bool:
    """Remove ``used`` unless it is ``new`` (F.resume.json, written over in
    place); whether it was removed here."""
    try:
        if new is not None and os.path.samefile(used, new):
            return False
        used.unlink()
    except FileNotFoundError:  # gone already: nothing can go on from it
        return False
    return True


def _valid(wid: str) -> bool:
    """Whether ``wid`` can be a workflow id (a bad line read ahead cannot: it
    is in the retry file, not in the resume point)."""
    try:
        validate_workflow_id(wid)
    except InvalidName:
        return False
    return True
