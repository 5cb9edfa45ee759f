"""A store that answers like a remote one: every call after a delay, a bounded
number at once. For tests and benchmarks of code that must run at a store's
limit (``bench/batch_latency.py``), without a network."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, Literal

import anyio

from .._lifecycle import Wrapper
from ..stores.base import ChecksPrefixes
from ..stores.memory import MemoryStore

Distribution = Literal["constant", "exponential"]


class LatencyStore(Wrapper):
    """Wraps a store (a new ``MemoryStore`` by default) so that every call
    waits ``latency`` seconds before it is answered, with at most
    ``max_in_flight`` calls in flight (waiting or answering), as S3 behind a
    connection pool.

    With ``distribution="exponential"`` each call's delay is drawn from an
    exponential distribution of mean ``latency`` (a long tail, as real
    services have); ``seed`` makes the draws repeatable. The limit of any
    client is then ``max_in_flight / latency`` calls per second.

    ``calls`` counts the calls by method; ``peak_in_flight`` is the most calls
    that were in flight at once.

    A prefix is checked as the wrapped store checks it
    (:class:`~asteps.stores.ChecksPrefixes`, as S3Store does), at once and
    uncounted (a check makes no request); over a store that checks none,
    every prefix passes.
    """

    def __init__(
        self,
        inner: Any = None,
        *,
        latency: float,
        distribution: Distribution = "constant",
        max_in_flight: int = 64,
        seed: int | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        if distribution not in ("constant", "exponential"):
            raise ValueError(
                f"distribution must be 'constant' or 'exponential', got {distribution!r}"
            )
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.inner = inner if inner is not None else MemoryStore()
        self.latency = latency
        self.distribution = distribution
        self.max_in_flight = max_in_flight
        self.calls: dict[str, int] = {}
        self.in_flight = 0
        self.peak_in_flight = 0
        self._limit = anyio.Semaphore(max_in_flight, fast_acquire=True)  # as S3Store's
        self._random = random.Random(seed)

    def __repr__(self) -> str:
        return (
            f"LatencyStore({self.inner!r}, latency={self.latency}, "
            f"distribution={self.distribution!r}, max_in_flight={self.max_in_flight})"
        )

    def delay(self) -> float:
        """The delay of the next call, in seconds."""
        if self.distribution == "exponential" and self.latency > 0:
            return self._random.expovariate(1 / self.latency)
        return self.latency

    async def _call(self, method: str, *args: Any) -> Any:
        self.calls[method] = self.calls.get(method, 0) + 1
        async with self._limit:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                await anyio.sleep(self.delay())
                return await getattr(self.inner, method)(*args)
            finally:
                self.in_flight -= 1

    # -- the store protocol, each call delayed ------------------------------------

    async def list_done(self, prefix: str) -> set[str]:
        names: set[str] = await self._call("list_done", prefix)
        return names

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        await self._call("mark_done", prefix, name, body)

    async def read_marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        body: Mapping[str, Any] | None = await self._call("read_marker", prefix, name)
        return body

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        await self._call("unmark", prefix, list(names))

    async def list_workflows(self, root: str = "") -> AsyncGenerator[str, None]:
        """The inner store's workflows, after one delay (one listing page)."""
        self.calls["list_workflows"] = self.calls.get("list_workflows", 0) + 1
        async with self._limit:
            await anyio.sleep(self.delay())
        async for name in self.inner.list_workflows(root):
            yield name

    # -- lifecycle: the inner store's ---------------------------------------------

    def _wrapped(self) -> Any:
        return self.inner

    def check_prefix(self, prefix: str) -> None:
        """The wrapped store's check, if it has one, undelayed and uncounted."""
        if isinstance(self.inner, ChecksPrefixes):
            self.inner.check_prefix(prefix)
