"""What the batch benchmarks share (``batch_latency.py``, ``scale.py``): the
flow of five steps, the store's limit C / L, and one BatchRun over a
LatencyStore, so that a rate, a limit and a CPU-bound rate mean the same
thing in every table.

- all done: one listing per workflow, limit C / L workflows/s;
- none done: one listing and five marker writes, limit C / (6 L);
- the CPU-bound rate: the same batch at L = 0, which caps the rate whatever
  the latency. A rate is compared with min(limit, CPU-bound rate).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

from asteps import MemoryStore, Runner
from asteps._batch import BatchRun, BatchSummary
from asteps.testing import LatencyStore

STEPS = 5
WORKLOADS = ("all-done", "none-done")


async def noop() -> None:
    pass


async def flow(runner: Runner, **_: Any) -> None:
    for i in range(STEPS):
        await runner.step(f"s{i}", noop)


def limit(workload: str, c: int, latency: float) -> float:
    """Workflows per second the store allows: C calls in flight, each L long."""
    calls = 1 if workload == "all-done" else 1 + STEPS
    return c / (calls * latency)


async def fill(store: MemoryStore, ids: Iterable[str]) -> None:
    """Every step of every workflow done (the all-done workload's store), with
    one body for all, as a run shares one among its markers."""
    body = {"run_id": "r"}
    for wid in ids:
        for i in range(STEPS):
            await store.mark_done(f"{wid}/steps/", f"s{i}", body)


async def batch(
    inner: MemoryStore,
    workload: str,
    c: int,
    latency: float,
    distribution: str,
    ids: Iterable[str],
    n: int,
    seed: int = 1,
) -> BatchSummary:
    """One BatchRun at concurrency ``c`` of the ``n`` workflows ``ids`` over
    ``inner`` behind a LatencyStore (mean ``latency``, ``c`` calls in flight);
    checks that every step was skipped (all done) or completed (none done)."""
    store = LatencyStore(
        inner,
        latency=latency,
        distribution=distribution,  # type: ignore[arg-type]
        max_in_flight=c,
        seed=seed,
    )
    gc.collect()
    summary = await BatchRun(flow, store, concurrency=c).run(ids)
    expected = "skipped" if workload == "all-done" else "completed"
    assert summary.steps == {expected: n * STEPS}, summary.steps
    return summary
