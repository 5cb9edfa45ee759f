"""Batch reruns: one flow over many workflows, streamed, bounded, interruptible.

The pipeline (why it looks like this):

    ids (streamed) -> N listers, each taking the next id and listing its done set
                   -> bounded channel -> N workers, each running one workflow

Ids are read lazily, so 100,000 ids never make 100,000 tasks: there are N
listers and N workers (N = ``concurrency``). Each lister takes the next id
(one at a time, under a lock), lists that workflow's done set and hands it
to a worker the moment it is in, so a workflow never waits for another's
listing (a slow listing, S3's latency tail, holds up one workflow, not a
chunk of them), and an id that arrives alone through a slow pipe starts at
once. At most N listings are in flight, and the look-ahead is bounded: at
most N ids being listed and N listed, waiting for a worker. The store's own
request limit (``S3Store(max_concurrency=...)``) is shared by the listings,
marker writes and body reads of the whole batch.

Workflows finish in whatever order their store calls allow, not in the order
of the ids; the summary, the retry file and a stop do not depend on it.

Memory per id: every distinct id read is kept in a set (to run duplicates
once), about 100 bytes per id (a million ids take about 100 MB), plus the
ids and errors of failed workflows for the summary.

Stopping (Ctrl-C in the CLI) stops reading ids, cancels the workflows in
flight (cancellation never marks a step done) and reports every id read that
did not finish: in flight, listed but not started, and read ahead into the
reader's buffer. The ids not yet read are not read: a stop costs time and
memory in proportion to the work in flight, never to the ids left (a file of
millions, a bucket of millions of workflows). The summary says where reading
stopped instead (``stopped_at``; for a file, ``next_line``, the line to go on
from). A store that fails (a listing after its retries, or a marker that
cannot be written), or ids that cannot be read (an I/O error, an iterator
that raises), stop the batch the same way: ``run`` always returns its summary.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import IO, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._bus import EventBus
from ._claims import DEFAULT_LEASE, check_lease
from ._flows import Flow
from ._names import (
    check_prefix_per_workflow,
    covers,
    format_prefix,
    shown,
    validate_patterns,
)
from ._runner import DEFAULT_PREFIX, Runner
from ._shards import Shard
from ._step import StepOutcome
from ._telemetry import batch_span, workflow_span
from .errors import ClaimsNotSupported, InvalidStepName, StoreError, describe
from .stores.base import DoneStore, HoldsClaims, ReadsMarkers

MAX_LINE_BYTES = 4096
"""A longer line of an ids file is a bad id (a workflow id has 255 bytes at most)."""

MAX_REASONS = 20
"""Reasons a batch's summary tells apart; the others count as ``OTHER_REASONS``."""
OTHER_REASONS = "other reasons"
NOT_DONE = "not done"
"""The reason counted for a step that runs only because it never completed."""
_MAX_REASON_CHARS = 120  # a reason may quote a marker's body (a version)

_CHUNK_BYTES = 65536
_BOM = b"\xef\xbb\xbf"


@dataclass
class WorkflowReport:
    """How one workflow of a batch went."""

    workflow_id: str
    ok: bool
    steps: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    duration: float = 0.0
    outcomes: list[StepOutcome] = field(default_factory=list)
    exception: Exception | None = None

    @property
    def store_error(self) -> StoreError | None:
        """The store failure that failed this workflow (a marker not written), if any."""
        if isinstance(self.exception, StoreError):
            return self.exception
        for outcome in self.outcomes:  # the flow may have caught it and gone on
            if isinstance(outcome.error, StoreError):
                return outcome.error
        return None


@dataclass
class BatchSummary:
    """Totals of a batch, updated as workflows finish."""

    succeeded: int = 0
    failed_ids: list[str] = field(default_factory=list)
    unfinished_ids: list[str] = field(default_factory=list)
    steps: Counter[str] = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    interrupted: bool = False
    aborted: str | None = None
    """Why the batch stopped early on its own (the store failed), if it did."""
    unreadable: str | None = None
    """Why the batch stopped early because its ids could not be read on (an
    I/O error of the ids file, an iterator that raised), if it did."""
    passed_over: int = 0
    """Workflows listed but not run: their done set did not match ``missing``
    or ``only_with_markers``."""
    stopped_at: str | None = None
    """After a stop: where reading the ids stopped, in words (``line 1,235``,
    ``after workflow 'w0042' of the store's listing``); None when every id
    was read. The ids from there on are in neither list: go on from there."""
    next_line: int | None = None
    """After a stop of a batch over an ids file (an :class:`IdReader`): the
    line to go on from (1-based); the ids of the lines before it that did not
    finish are in ``unfinished_ids`` or ``failed_ids``."""
    run_reasons: Counter[str] = field(default_factory=Counter)
    """Why the steps that ran (or would run, in a dry run) did: how many
    steps for each reason (their decision's reasons joined by ``"; "``:
    ``"result missing"``, ``"version 1 -> 2"``, ``"forced by export"``;
    ``"not done"`` when the step had never completed). At most
    ``MAX_REASONS`` are told apart, the rest counted as ``"other reasons"``."""
    shard: str | None = None
    """The shard that ran (``"0/4"``), when the batch ran one shard of its ids."""
    other_shards: int = 0
    """Ids read and left to the other shards (not run, not in any list)."""

    @property
    def stopped(self) -> bool:
        """Whether the batch stopped before its ids were over (see ``stopped_at``)."""
        return self.interrupted or self.aborted is not None or self.unreadable is not None

    @property
    def finished(self) -> int:
        """Workflows that ran to the end, successfully or not."""
        return self.succeeded + len(self.failed_ids)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able data (the CLI's ``--json``)."""
        return {
            "workflows": {
                "finished": self.finished,
                "succeeded": self.succeeded,
                "failed": len(self.failed_ids),
                "unfinished": len(self.unfinished_ids),
            },
            "passed_over": self.passed_over,
            "shard": self.shard,
            "other_shards": self.other_shards,
            "steps": dict(self.steps),
            "run_reasons": dict(self.run_reasons.most_common()),
            "elapsed": round(self.elapsed, 3),
            "interrupted": self.interrupted,
            "aborted": self.aborted,
            "unreadable": self.unreadable,
            "stopped_at": self.stopped_at,
            "next_line": self.next_line,
            "failed_ids": self.failed_ids,
            "unfinished_ids": self.unfinished_ids,
            "errors": self.errors,
        }


# -- reading ids ------------------------------------------------------------------


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
    """Ids read from a stream by a thread, so the event loop never waits on a pipe.

    The thread reads ahead at most ``buffer`` ids and hands them over in
    batches of half of that, or sooner when its next read could block (the
    ids of one pipe write arrive without waiting for more): it wakes the event
    loop at most once a batch, and only when a ``get`` waits. ``get`` waits
    for the next one. ``stop`` is the bounded end of a batch (a rerun, a
    submit): it stops reading and gives the ids already read and not taken,
    with the line to go on from; the ids after it are never read, so a stop
    costs what is buffered, not what is left. The thread is a daemon: a pipe
    held open never keeps the process alive.
    """

    def __init__(self, stream: IO[bytes], *, buffer: int = 1024) -> None:
        self._stream = stream
        self._buffer = buffer
        self._items: deque[str | BadId] = deque()
        self._lock = threading.Condition()
        self._ended = False
        self._error: Exception | None = None
        self._stopped = False  # what the thread reads from now on is dropped
        self._arrived: anyio.Event | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._next_line = 1  # the line after the last id handed over

    def start(self) -> None:
        """Start reading (from inside the event loop)."""
        self._token = anyio.lowlevel.current_token()
        threading.Thread(target=self._pump, name="asteps ids reader", daemon=True).start()

    async def get(self) -> str | BadId | None:
        """The next id, waiting for it; None at the end."""
        while True:
            with self._lock:
                if self._items or self._ended:
                    return self._take()
                self._arrived = anyio.Event()
            await self._arrived.wait()

    def stop(self) -> _Left:
        """Stop reading: the ids read and not taken (at most the buffer), and
        the line to go on from, unless every line was read."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
            left = list(self._items)
            self._items.clear()
            if self._ended and self._error is None:
                return _Left(left)
            return _Left(left, f"line {self._next_line:,}", self._next_line)

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
class _Left:
    """What a source of ids gives back when a batch stops: the ids it had
    read and not handed out (bounded by its buffer), and where it stopped."""

    ids: list[str | BadId]
    where: str | None = None
    """None when every id was read."""
    next_line: int | None = None


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

    def stop(self) -> _Left:
        """Nothing read ahead; the rest of the iterable is left as it is."""
        return _Left([]) if self._over else _Left([], f"after {self._taken:,} ids")


class _DiscoveredIds:
    """Ids from an async iterator (the store's own listing, see
    ``asteps.stores.discovery``), as an :class:`IdReader` gives them."""

    def __init__(self, ids: AsyncIterator[str]) -> None:
        self._ids = ids
        self._last: str | None = None
        self._over = False

    async def get(self) -> str | BadId | None:
        wid = await anext(self._ids, None)
        self._over = wid is None
        if wid is not None:
            self._last = wid
        return wid

    def stop(self) -> _Left:
        """The listing is not gone on with: the workflows after the last one
        listed are for another run."""
        if self._over:
            return _Left([])
        if self._last is None:
            return _Left([], "before the first workflow of the store's listing")
        return _Left([], f"after workflow {shown(self._last)} of the store's listing")

    async def aclose(self) -> None:
        if isinstance(self._ids, AsyncGenerator):
            await self._ids.aclose()


_Source = IdReader | IterableIds | _DiscoveredIds


@dataclass
class _Books:
    """What a running batch knows about its ids."""

    summary: BatchSummary
    seen: set[str] = field(default_factory=set)
    """Every id read (to run duplicates once)."""
    pending: dict[str, None] = field(default_factory=dict)
    """Read, valid, not finished; in reading order."""


class BatchRun:
    """Run ``flow`` for many workflow ids, ``concurrency`` at a time.

    ``missing`` (patterns) keeps only the workflows where some pattern covers
    none of the done steps (``missing=["export.csv"]``: those whose CSV export
    never completed); ``only_with_markers`` keeps only those with at least one
    done step. Both are decided on the workflow's listing, which the run uses
    anyway; the others are counted in ``summary.passed_over`` and not run.

    ``exclusive`` and ``lease`` go to every workflow's :class:`Runner`: with
    ``exclusive=True`` each step is claimed in the store before it runs, so
    that two batches (or a batch and a service) over the same ids never run
    a step at the same time. A store that cannot hold claims raises
    :class:`~asteps.errors.ClaimsNotSupported` here, before any workflow.

    ``shard`` keeps only the ids of that shard (see ``asteps._shards``),
    before anything is listed; the others are counted in
    ``summary.other_shards``.
    """

    def __init__(
        self,
        flow: Flow,
        store: DoneStore,
        *,
        force: Sequence[str] = (),
        skip: Sequence[str] = (),
        reason: str | None = None,
        params: Mapping[str, Any] | None = None,
        concurrency: int = 32,
        prefix: str = DEFAULT_PREFIX,
        context: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        version: str | None = None,
        missing: Sequence[str] = (),
        only_with_markers: bool = False,
        on_workflow: Callable[[WorkflowReport, BatchSummary], None] | None = None,
        exclusive: bool = False,
        lease: float = DEFAULT_LEASE,
        shard: Shard | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.exclusive = bool(exclusive)
        self.lease = check_lease(lease)
        if self.exclusive and not dry_run and not _holds_claims(store):
            # Once, here: not as many times as there are workflows.
            raise ClaimsNotSupported(
                f"{store!r} cannot hold claims, which exclusive steps need: use "
                "MemoryStore, FileStore or S3Store, or run without exclusive"
            )
        self.flow = flow
        self.store = store
        self.force = validate_patterns(force)
        self.skip = validate_patterns(skip)
        self.reason = reason
        self.params = dict(params or {})
        self.concurrency = concurrency
        self.prefix = prefix
        self.context = context
        self.dry_run = dry_run
        self.version = version
        self.missing = validate_patterns(missing)
        self.only_with_markers = only_with_markers
        self.on_workflow = on_workflow
        self.shard = shard
        format_prefix(prefix, "check", context)  # a bad template fails before any I/O

    async def run(
        self,
        ids: Iterable[str | BadId] | AsyncIterator[str] | IdReader,
        stop: anyio.Event | None = None,
    ) -> BatchSummary:
        """Run every id (duplicates once). Setting ``stop`` interrupts cleanly.

        ``ids`` is an iterable, an :class:`IdReader` (a file or a pipe), or an
        async iterator (``discover_workflows``). A :class:`BadId` fails as one
        workflow, with its reason, and the others run. The prefix template
        must give each workflow its own prefix (``{workflow_id}/``).
        """
        check_prefix_per_workflow(self.prefix, self.context)
        source: _Source
        if isinstance(ids, IdReader):
            source = ids
        elif isinstance(ids, AsyncIterator):
            source = _DiscoveredIds(ids)
        else:
            source = IterableIds(ids)
        books = _Books(BatchSummary(shard=None if self.shard is None else str(self.shard)))
        started = time.perf_counter()
        try:
            with batch_span():
                await self._pipeline(source, books, stop)
            summary = books.summary
            if summary.stopped:
                # What was read, not what is left to read: the stop costs what
                # is in flight, however many ids follow.
                left = source.stop()
                ours = (i for i in left.ids if self._in_shard(i))
                summary.unfinished_ids = [*books.pending, *_new_ids(ours, books)]
                summary.stopped_at, summary.next_line = left.where, left.next_line
        finally:
            if isinstance(source, _DiscoveredIds):
                with anyio.CancelScope(shield=True):
                    await source.aclose()
        summary.elapsed = time.perf_counter() - started
        return summary

    async def _pipeline(self, source: _Source, books: _Books, stop: anyio.Event | None) -> None:
        """Listers -> workers, until the ids are over or the work is cancelled."""
        send, receive = anyio.create_memory_object_stream[Runner](self.concurrency)
        reading = anyio.Lock(fast_acquire=True)  # one lister reads the ids at a time
        work = anyio.CancelScope()
        async with anyio.create_task_group() as outer:
            if stop is not None:

                async def watch() -> None:
                    await stop.wait()
                    books.summary.interrupted = True
                    work.cancel()

                outer.start_soon(watch)
            with work:
                async with anyio.create_task_group() as tg:
                    for _ in range(self.concurrency):
                        tg.start_soon(self._list, source, reading, send.clone(), books, work)
                        tg.start_soon(self._work, receive.clone(), books, work)
                    send.close()
                    receive.close()
            outer.cancel_scope.cancel()

    async def _list(
        self,
        source: _Source,
        reading: anyio.Lock,
        send: MemoryObjectSendStream[Runner],
        books: _Books,
        work: anyio.CancelScope,
    ) -> None:
        """Take the next id, list its done set, hand it to a worker the moment
        it is in; again until the ids are over."""
        async with send:
            while True:
                try:
                    async with reading:
                        taken = await self._next(source, books)
                except Exception as exc:
                    # The ids cannot be read on: the store's own listing failed,
                    # an ids file hit an I/O error, an iterator raised.
                    self._abort(exc, books.summary, work, reading=True)
                    return
                if taken is None:
                    return
                try:
                    done = await taken.steps_done()  # the runner keeps it
                except Exception as exc:
                    # The store is gone (after its retries): stop the batch, but
                    # keep what it did and the ids left, so it can be resumed.
                    self._abort(exc, books.summary, work)
                    return
                if not self._selected(done):
                    del books.pending[taken.workflow_id]
                    books.summary.passed_over += 1
                    continue
                await send.send(taken)

    async def _next(self, source: _Source, books: _Books) -> Runner | None:
        """The runner of the next new, valid id; None once the ids are over."""
        while (item := await source.get()) is not None:
            if (taken := self._take(item, books)) is not None:
                return taken
        return None

    def _selected(self, done: frozenset[str]) -> bool:
        """Whether a workflow with this done set is run (``missing``, ``only_with_markers``)."""
        if self.only_with_markers and not done:
            return False
        if self.missing:
            return any(not any(covers(p, name) for name in done) for p in self.missing)
        return True

    def _in_shard(self, item: str | BadId) -> bool:
        """Whether this batch runs ``item`` (every id, without a shard)."""
        wid = item.text if isinstance(item, BadId) else item
        return self.shard is None or self.shard.holds(wid)

    def _take(self, item: str | BadId, books: _Books) -> Runner | None:
        """The runner of a new, valid id; a bad or invalid one fails at once."""
        wid = item.text if isinstance(item, BadId) else item
        if not self._in_shard(item):
            books.summary.other_shards += 1  # not kept in seen: another shard's memory
            return None
        if wid in books.seen:
            return None
        books.seen.add(wid)
        if isinstance(item, BadId):
            self._record(WorkflowReport(wid, ok=False, error=item.reason), books.summary)
            return None
        try:
            runner = self._runner(wid)  # checks the id, formats its prefix
        except InvalidStepName as exc:
            self._record(WorkflowReport(wid, ok=False, error=str(exc)), books.summary)
            return None
        books.pending[wid] = None
        return runner

    async def _work(
        self,
        receive: MemoryObjectReceiveStream[Runner],
        books: _Books,
        work: anyio.CancelScope,
    ) -> None:
        async with receive:
            async for runner in receive:
                report = await self._run(runner)
                del books.pending[runner.workflow_id]
                self._record(report, books.summary)
                if (failure := report.store_error) is not None:
                    self._abort(failure, books.summary, work)
                    return

    def _abort(
        self,
        exc: Exception,
        summary: BatchSummary,
        work: anyio.CancelScope,
        *,
        reading: bool = False,
    ) -> None:
        """Stop the batch on a failure that is not one workflow's: the store's
        (``aborted``), or, while reading the ids, anything but the store's
        (``unreadable``)."""
        if reading and not isinstance(exc, StoreError):
            if summary.unreadable is None:
                summary.unreadable = f"reading the ids failed: {describe(exc)}"
        elif summary.aborted is None:
            summary.aborted = str(exc) if isinstance(exc, StoreError) else describe(exc)
        work.cancel()

    async def run_one(
        self,
        workflow_id: str,
        done: frozenset[str] | None = None,
        *,
        run_id: str | None = None,
        bus: EventBus | None = None,
    ) -> WorkflowReport:
        """Run the flow for one workflow; its failure is reported, not raised.

        ``run_id`` and ``bus`` go to its runner (an SWF worker passes the
        execution's run id, and the bus its signal bridge reads).
        """
        return await self._run(self._runner(workflow_id, done, run_id=run_id, bus=bus))

    def _runner(
        self,
        workflow_id: str,
        done: frozenset[str] | None = None,
        *,
        run_id: str | None = None,
        bus: EventBus | None = None,
    ) -> Runner:
        """The runner of one workflow, with the batch's patterns: it checks the
        id and formats the prefix (``InvalidStepName`` when either is bad)."""
        runner = Runner(
            self.store,
            workflow_id,
            run_id=run_id,
            version=self.version,
            bus=bus,
            prefix=self.prefix,
            context=self.context,
            dry_run=self.dry_run,
            done=done,
            exclusive=self.exclusive,
            lease=self.lease,
        )
        if self.force:
            runner.add_forced_steps(self.force, reason=self.reason)
        if self.skip:
            runner.add_skipped_steps(self.skip, reason=self.reason)
        return runner

    async def _run(self, runner: Runner) -> WorkflowReport:
        """Run the flow with ``runner``; its failure is reported, not raised."""
        started = time.perf_counter()
        workflow_id = runner.workflow_id
        error: str | None = None
        exception: Exception | None = None
        with workflow_span(workflow_id) as workflow:
            try:
                await self.flow(runner, **self.params)
            except Exception as exc:
                error, exception = describe(exc), exc
            steps: Counter[str] = Counter(o.shown_status for o in runner.outcomes)
            for outcome in runner.outcomes:
                if outcome.attempts > 1:  # steps that needed more than one attempt
                    steps["retried"] += 1
                    steps["attempts"] += outcome.attempts
            failed = [o for o in runner.outcomes if o.status == "failed"]
            if failed:  # the step's name says more than the exception alone
                error = _first_error(failed)
            workflow.ok = error is None
        return WorkflowReport(
            workflow_id,
            ok=error is None,
            steps=steps,
            error=error,
            duration=time.perf_counter() - started,
            outcomes=runner.outcomes,
            exception=exception,
        )

    def _record(self, report: WorkflowReport, summary: BatchSummary) -> None:
        if report.ok:
            summary.succeeded += 1
        else:
            summary.failed_ids.append(report.workflow_id)
            summary.errors[report.workflow_id] = report.error or "failed"
        summary.steps.update(report.steps)
        for outcome in report.outcomes:
            if outcome.decision == "run":
                _count_reason(summary.run_reasons, run_reason(outcome))
        if self.on_workflow is not None:
            self.on_workflow(report, summary)


def _holds_claims(store: DoneStore) -> bool:
    """Whether ``store`` gives what exclusive steps need (as the runner checks)."""
    return isinstance(store, HoldsClaims) and isinstance(store, ReadsMarkers)


def _new_ids(items: Iterable[str | BadId], books: _Books) -> Iterator[str]:
    """The ids among ``items`` not read before, each once."""
    for item in items:
        wid = item.text if isinstance(item, BadId) else item
        if wid not in books.seen:
            books.seen.add(wid)
            yield wid


def run_reason(outcome: StepOutcome) -> str:
    """Why a step ran or would run, in one line, as a batch's summary counts it."""
    if outcome.reasons:
        return "; ".join(outcome.reasons)
    if outcome.forced:
        return "forced by " + ", ".join(outcome.patterns) if outcome.patterns else "forced"
    return NOT_DONE


def _count_reason(counter: Counter[str], reason: str) -> None:
    """Count ``reason``, within bounds: reasons may quote a marker's body, so
    the text is cut short and at most ``MAX_REASONS`` are told apart."""
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[:_MAX_REASON_CHARS] + "..."
    if reason not in counter and len(counter) - (OTHER_REASONS in counter) >= MAX_REASONS:
        reason = OTHER_REASONS
    counter[reason] += 1


def _first_error(failed: list[StepOutcome]) -> str:
    first = failed[0]
    detail = describe(first.error) if first.error else "failed"
    return f"step {first.name} failed: {detail}"
