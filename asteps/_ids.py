"""Reading ids: files, stdin, lists and the store's listing, as one kind of source.

A source gives the next id (``get``), and, when a batch stops, what it had
read and not handed out with where it stopped (``stop``): the line to go on
from for a file, the last workflow listed for the store's listing. Reading
stops there: a stop costs what is buffered, never what is left. A
:class:`~asteps._resume.ResumePoint` records that place, so that a batch can
go on from it (``asteps rerun --resume``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._names import shown

MAX_LINE_BYTES = 4096
"""A longer line of an ids file is a bad id (a workflow id has 255 bytes at most)."""

_CHUNK_BYTES = 65536
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BadId:
    """A line of an ids file that cannot be a workflow id: not UTF-8, or too long.

    ``text`` is the line as read, undecodable bytes kept as surrogate escapes, so
    that writing it back with ``errors="surrogateescape"`` gives the same bytes.
    """

    text: str
    reason: str


def read_ids(chunks: Iterable[bytes]) -> Iterator[str | BadId]:
    """Workflow ids from bytes (a binary file, or :func:`stream_chunks`), one a line.

    Lines are stripped of ASCII whitespace; blank lines and ``#`` comments are
    skipped. A line that is not UTF-8, or longer than ``MAX_LINE_BYTES``, is a
    :class:`BadId` whose reason names its line number: one bad line spoils
    nothing else. A UTF-8 byte order mark at the start (some editors write
    one) is not part of the first id.
    """
    for _, item in numbered_ids(chunks):
        yield item


def numbered_ids(chunks: Iterable[bytes]) -> Iterator[tuple[int, str | BadId]]:
    """The ids of :func:`read_ids`, each with its line number."""
    for number, line in enumerate(_lines(chunks), start=1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if len(line) > MAX_LINE_BYTES:
            # The line as read (cut just past the limit): written back to a retry
            # file it fails again, where a shortened stand-in could be a valid id.
            text = line.decode("utf-8", "surrogateescape")
            yield number, BadId(text, f"line {number} is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = line.strip().decode("utf-8", "surrogateescape")
            reason = f"line {number} is not UTF-8 ({exc.reason} at byte {exc.start})"
            yield number, BadId(shown, reason)
            continue
        wid = text.strip(" \t\r\n\v\f")
        if wid and not wid.startswith("#"):
            yield number, wid


def stream_chunks(stream: IO[bytes], *, offset: int | None = None) -> Iterator[bytes]:
    """The bytes of ``stream`` from its position (or from ``offset``, without
    moving the position), read from its descriptor when it has one."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: an in-memory stream
        yield from iter(lambda: stream.read(_CHUNK_BYTES), b"")
        return
    if offset is not None:
        while chunk := os.pread(fd, _CHUNK_BYTES, offset):
            offset += len(chunk)
            yield chunk
        return
    # os.read on the descriptor, not the buffered stream: a thread blocked in
    # it holds no lock that interpreter shutdown would wait for (stdin's).
    yield from iter(lambda: os.read(fd, _CHUNK_BYTES), b"")


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines without their newline; a line over MAX_LINE_BYTES is cut to one byte
    more, so that memory stays bounded whatever the input."""
    pending = b""
    skipping = False  # in the rest of a line already given, cut
    for chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            if skipping:
                skipping = False
                continue
            yield line[: MAX_LINE_BYTES + 1]
        if len(pending) > MAX_LINE_BYTES:
            if not skipping:
                yield pending[: MAX_LINE_BYTES + 1]
                skipping = True
            pending = b""
    if pending and not skipping:
        yield pending


class IdReader:
    """Ids read from a binary stream by a thread, so the event loop never waits on a pipe.

    The ids of a file opened ``"rb"``, a pipe or ``sys.stdin.buffer``, one a
    line, for :meth:`BatchRun.run` or ``asteps.swf.submit``: lines are
    stripped of ASCII whitespace, blank lines and ``#`` comments skipped, and
    a line that is not UTF-8 or is longer than 4,096 bytes is a
    :class:`BadId`. ``buffer`` bounds the ids read ahead; ``start_line``
    (1-based) passes over the lines before it.

    The thread reads ahead at most ``buffer`` ids and hands them over in
    batches of half of that, or sooner when its next read could block (the
    ids of one pipe write arrive without waiting for more): it wakes the event
    loop at most once a batch, and only when a ``get`` waits. ``get`` waits
    for the next one. ``stop`` is the bounded end of a batch (a rerun, a
    submit): it stops reading and gives the ids already read and not taken,
    with the line to go on from; the ids after it are never read, so a stop
    costs what is buffered, not what is left. The thread is a daemon: a pipe
    held open never keeps the process alive. ``start_line`` (1-based) passes
    over the lines before it: a batch going on from a resume point. The
    first ``get`` starts the reading if :meth:`start` has not: a reader
    chained after a resume point's unfinished ids (:class:`ChainedIds`) reads
    nothing before their turn, so a stop then leaves no buffer on top of them.
    """

    def __init__(self, stream: IO[bytes], *, buffer: int = 1024, start_line: int = 1) -> None:
        self._stream = stream
        self._start_line = start_line
        self._buffer = buffer
        self._items: deque[str | BadId] = deque()
        self._lock = threading.Condition()
        self._ended = False
        self._error: Exception | None = None
        self._stopped = False  # what the thread reads from now on is dropped
        self._arrived: anyio.Event | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._next_line = start_line  # the line after the last id handed over

    def start(self) -> None:
        """Start reading (from inside the event loop), unless it has started."""
        if self._token is not None:
            return
        self._token = anyio.lowlevel.current_token()
        threading.Thread(target=self._pump, name="asteps ids reader", daemon=True).start()

    async def get(self) -> str | BadId | None:
        """The next id, waiting for it; None at the end."""
        self.start()
        while True:
            with self._lock:
                if self._items or self._ended:
                    return self._take()
                self._arrived = anyio.Event()
            await self._arrived.wait()

    async def aclose(self) -> None:
        """Nothing to close: the thread ends with the stream, or at a stop."""

    def stop(self) -> IdsLeft:
        """Stop reading: an :class:`IdsLeft` of the ids read and not taken (at
        most the buffer), and the line to go on from, unless every line was read."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
            left = list(self._items)
            self._items.clear()
            if self._ended and self._error is None:
                return IdsLeft(left)
            return IdsLeft(left, f"line {self._next_line:,}", self._next_line)

    def _take(self) -> str | BadId | None:
        if self._items:
            item = self._items.popleft()
            # The thread refills from half empty: it wakes once per half buffer,
            # not once per id.
            if len(self._items) <= self._buffer // 2:
                self._lock.notify_all()
            return item
        if self._error is not None:
            raise self._error
        return None

    def _pump(self) -> None:
        batch: list[str | BadId] = []
        half = max(1, self._buffer // 2)
        line = 0  # of the last id in batch

        def chunks() -> Iterator[bytes]:
            for chunk in stream_chunks(self._stream):
                yield chunk
                self._hand_over(batch, line, room=half)  # before a read that could block

        try:
            for line, item in numbered_ids(chunks()):
                if line < self._start_line:
                    continue
                batch.append(item)
                if len(batch) >= half:
                    self._hand_over(batch, line, room=half)
                if self._stopped:
                    return
        except Exception as exc:  # an I/O error: the reader of ids sees it
            self._error = exc
        finally:
            self._hand_over(batch, line, room=half, ended=True)

    def _hand_over(
        self, batch: list[str | BadId], line: int, *, room: int, ended: bool = False
    ) -> None:
        """Move ``batch`` (whose last id is on ``line``) to the ids a ``get``
        takes, waking the event loop if one waits; then wait until ``room``
        more ids fit in the buffer."""
        with self._lock:
            if not self._stopped:
                self._items.extend(batch)
                if batch:
                    self._next_line = line + 1
            batch.clear()
            self._ended = ended
            waiting = None
            if self._items or ended:
                waiting, self._arrived = self._arrived, None
        if waiting is not None:  # only a waiting get() needs the event loop
            self._wake(waiting)
        with self._lock:
            while not ended and len(self._items) > self._buffer - room and not self._stopped:
                self._lock.wait()

    def _wake(self, event: anyio.Event) -> None:
        with contextlib.suppress(anyio.RunFinishedError):  # nobody is waiting any more
            anyio.from_thread.run_sync(event.set, token=self._token)


@dataclass(frozen=True)
class IdsLeft:
    """What a source of ids gives back when a batch stops (``IdReader.stop()``):
    the ids it had read and not handed out (bounded by its buffer), and where
    it stopped, to go on from there."""

    ids: list[str | BadId] = field(default_factory=list)
    where: str | None = None
    """In words; None when every id was read."""
    next_line: int | None = None
    """An ids file's line to go on from."""
    after: str | None = None
    """The store's listing: the last workflow listed (S3's ``StartAfter``)."""


class IterableIds:
    """Ids from an iterable, as an :class:`IdReader` gives them."""

    def __init__(self, ids: Iterable[str | BadId]) -> None:
        self._ids = iter(ids)
        self._taken = 0
        self._over = False

    async def get(self) -> str | BadId | None:
        item = next(self._ids, None)
        self._over = item is None
        self._taken += item is not None
        return item

    def stop(self) -> IdsLeft:
        """Nothing read ahead; the rest of the iterable is left as it is."""
        return IdsLeft() if self._over else IdsLeft([], f"after {self._taken:,} ids")

    async def aclose(self) -> None:
        pass


class DiscoveredIds:
    """Ids from the store's own listing (see ``asteps.stores.discovery``), or
    any async iterator of ids, as an :class:`IdReader` gives them.

    ``start_after`` is where the listing began (a resume point's), so that a
    stop before the first id still says where to go on from.
    """

    def __init__(self, ids: AsyncIterator[str], *, start_after: str | None = None) -> None:
        self._ids = ids
        self._last = start_after
        self._over = False

    async def get(self) -> str | BadId | None:
        wid = await anext(self._ids, None)
        self._over = wid is None
        if wid is not None:
            self._last = wid
        return wid

    def stop(self) -> IdsLeft:
        """The listing is not gone on with: the workflows after the last one
        listed are for another run."""
        if self._over:
            return IdsLeft()
        if self._last is None:
            return IdsLeft([], "before the first workflow of the store's listing")
        where = f"after workflow {shown(self._last)} of the store's listing"
        return IdsLeft([], where, after=self._last)

    async def aclose(self) -> None:
        if isinstance(self._ids, AsyncGenerator):
            await self._ids.aclose()


class ChainedIds:
    """``first`` (a resume point's unfinished ids), then the ids of ``then``;
    without ``then``, nothing after them (the point's source had been read
    to its end: a stop leaves no place to go on reading from)."""

    def __init__(self, first: Iterable[str], then: IdSource | None = None) -> None:
        self._first = deque(first)
        self._then = then

    async def get(self) -> str | BadId | None:
        if self._first:
            return self._first.popleft()
        return None if self._then is None else await self._then.get()

    def stop(self) -> IdsLeft:
        left = IdsLeft() if self._then is None else self._then.stop()
        ids: list[str | BadId] = [*self._first, *left.ids]
        return IdsLeft(ids, left.where, left.next_line, left.after)

    async def aclose(self) -> None:
        if self._then is not None:
            await self._then.aclose()


IdSource = IdReader | IterableIds | DiscoveredIds | ChainedIds
"""Where a batch takes its ids from."""


def text_of(item: str | BadId) -> str:
    """The id as read (a bad line's text)."""
    return item.text if isinstance(item, BadId) else item
