"""The bounded pipeline of a batch: ids -> N listers -> N workers, its stop and its end.

Why it looks like this:

    ids (streamed) -> N listers, each taking the next id and preparing it
                   -> bounded channel -> N workers, each doing its work

Ids are read lazily, so 100,000 ids never make 100,000 tasks: there are N
listers and N workers (N = ``concurrency``). Each lister takes the next id
(one at a time, under a lock), prepares it (a rerun lists the workflow's
done set; a submit has nothing to list) and hands it to a worker the moment
it is ready, so an id never waits for another's preparation (a slow listing,
S3's latency tail, holds up one workflow, not a chunk of them), and an id
that arrives alone through a slow pipe starts at once. The look-ahead is
bounded: at most N ids being prepared and N prepared, waiting for a worker.

Ids run in whatever order their work allows, not in the order read; the
end, the retry file and a stop do not depend on it.

Memory is flat in the number of ids: the pipeline remembers only the ids in
flight (being prepared, waiting, at work), so that an id that comes again
while its first run is in flight is passed over, never run twice at once.
An id that comes again after its run finished runs again (a rerun: one
listing, and every step done is skipped).

A stop (``stop`` set, or :meth:`Pipeline.abort` by the work itself) stops
reading, cancels the work in flight and gives back, in :class:`End`, every id
read that did not finish (in flight and read ahead by the source) and where
reading stopped. The ids not yet read are never read: a stop costs time and
memory in proportion to the work in flight, never to the ids left.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._ids import BadId, IdSource, text_of
from ._shards import Shard
from .errors import StoreError, describe

T = TypeVar("T")


@dataclass
class End:
    """How a pipeline ended."""

    interrupted: bool = False
    """``stop`` was set."""
    aborted: str | None = None
    """Why the work stopped the pipeline (the store or SWF failed), if it did."""
    unreadable: str | None = None
    """Why the ids could not be read on (an I/O error, an iterator that
    raised), if that stopped the pipeline."""
    other_shards: int = 0
    """Ids read and left to the other shards."""
    unfinished: list[str] = field(default_factory=list)
    """After a stop: the ids read and not finished (in flight, then read ahead)."""
    stopped_at: str | None = None
    """After a stop: where reading stopped, in words; None when every id was read."""
    next_line: int | None = None
    """After a stop while reading an ids file: the line to go on from."""
    after: str | None = None
    """After a stop while reading the store's listing: the last workflow listed."""

    @property
    def stopped(self) -> bool:
        return self.interrupted or self.aborted is not None or self.unreadable is not None


class Pipeline(Generic[T]):
    """Ids from a source through ``prepare`` then ``work``, ``concurrency`` of each at once.

    ``prepare(id)`` gives what the work needs, or None to pass the id over
    (it was refused, or is not selected: it has said so itself); if it
    raises, the pipeline stops (``aborted``: the store failed) with the id
    unfinished. ``work`` does it, and says whether the id is done with
    (False: it stopped the pipeline first, and the id stays unfinished).
    ``refuse(id, reason)`` is told of a bad line of an ids file, and
    ``repeat(id)`` of an id passed over because it is in flight. With
    ``shard``, the ids of the other shards are counted and passed over before
    anything else. Any callback may call :meth:`abort` to stop the batch.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        prepare: Callable[[str], Awaitable[T | None]],
        work: Callable[[T], Awaitable[bool]],
        refuse: Callable[[str, str], None],
        repeat: Callable[[str], None],
        shard: Shard | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self._prepare = prepare
        self._work = work
        self._refuse = refuse
        self._repeat = repeat
        self.shard = shard
        self.in_flight: dict[str, None] = {}
        """The ids read and not finished, in reading order (the only ids remembered)."""
        self._end = End()
        self._scope = anyio.CancelScope()

    def abort(self, why: str) -> None:
        """Stop the pipeline on a failure that is not one id's (the first reason is kept)."""
        if self._end.aborted is None:
            self._end.aborted = why
        self._scope.cancel()

    async def run(self, source: IdSource, stop: anyio.Event | None = None) -> End:
        """Every id of ``source``, until they are over or a stop; the source is closed."""
        try:
            await self._run(source, stop)
            end = self._end
            if end.stopped:
                # What was read, not what is left to read: the stop costs what
                # is in flight, however many ids follow.
                left = source.stop()
                # The ids read ahead are counted as they would have been taken:
                # another shard's, and a repeat of an id unfinished, are not unfinished.
                unfinished = dict(self.in_flight)
                for wid in (text_of(item) for item in left.ids):
                    if not self._in_shard(wid):
                        end.other_shards += 1
                    elif wid in unfinished:
                        self._repeat(wid)
                    else:
                        unfinished[wid] = None
                end.unfinished = list(unfinished)
                end.stopped_at, end.next_line, end.after = left.where, left.next_line, left.after
        finally:
            with anyio.CancelScope(shield=True):
                await source.aclose()
        return end

    async def _run(self, source: IdSource, stop: anyio.Event | None) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[str, T]](self.concurrency)
        reading = anyio.Lock(fast_acquire=True)  # one lister reads the ids at a time
        async with anyio.create_task_group() as outer:
            if stop is not None:

                async def watch() -> None:
                    await stop.wait()
                    self._end.interrupted = True
                    self._scope.cancel()

                outer.start_soon(watch)
            with self._scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(self.concurrency):
                        tg.start_soon(self._lister, source, reading, send.clone())
                        tg.start_soon(self._worker, receive.clone())
                    send.close()
                    receive.close()
            outer.cancel_scope.cancel()

    async def _lister(
        self,
        source: IdSource,
        reading: anyio.Lock,
        send: MemoryObjectSendStream[tuple[str, T]],
    ) -> None:
        """Take the next id, prepare it, hand it to a worker the moment it is
        ready; again until the ids are over."""
        async with send:
            while True:
                try:
                    async with reading:
                        wid = await self._next(source)
                except Exception as exc:
                    # The ids cannot be read on: the store's own listing failed,
                    # an ids file hit an I/O error, an iterator raised.
                    if isinstance(exc, StoreError):
                        self.abort(str(exc))
                    else:
                        if self._end.unreadable is None:
                            self._end.unreadable = f"reading the ids failed: {describe(exc)}"
                        self._scope.cancel()
                    return
                if wid is None:
                    return
                try:
                    prepared = await self._prepare(wid)
                except Exception as exc:
                    # The store is gone (after its retries): stop the batch; the
                    # id stays in flight, to be reported unfinished.
                    self.abort(str(exc) if isinstance(exc, StoreError) else describe(exc))
                    return
                if prepared is None:
                    del self.in_flight[wid]
                    continue
                await send.send((wid, prepared))

    async def _next(self, source: IdSource) -> str | None:
        """The next id of this shard, not in flight, and valid; None once the ids are over."""
        while (item := await source.get()) is not None:
            wid = text_of(item)
            if not self._in_shard(wid):
                self._end.other_shards += 1
            elif wid in self.in_flight:  # its first run is in flight: never twice at once
                self._repeat(wid)
            elif isinstance(item, BadId):
                self._refuse(wid, item.reason)
            else:
                self.in_flight[wid] = None
                return wid
        return None

    async def _worker(self, receive: MemoryObjectReceiveStream[tuple[str, T]]) -> None:
        async with receive:
            async for wid, prepared in receive:
                if await self._work(prepared):
                    del self.in_flight[wid]

    def _in_shard(self, wid: str) -> bool:
        return self.shard is None or self.shard.holds(wid)
