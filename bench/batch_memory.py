"""Memory of a big batch: peak RSS growth of ``rerun`` over 100,000 ids x 5 steps
on a MemoryStore, and what it comes to per workflow id.

Each workload runs in a fresh child process, the two side by side (a
process's RSS is its own; their times, shown for information, share the
machine): the ids are written to a file,
read back by an ``IdReader`` (as ``asteps rerun --ids FILE`` does) and run by
``BatchRun`` at concurrency 64. A thread samples the process's RSS every
10 ms; the growth is the peak during the batch less the RSS just before it.

- none done: every step runs, so the growth includes the 500,000 markers the
  store gains;
- all done: the store is filled before the baseline, so the growth is the
  batch's own (the set of ids seen, the pipeline, the summary).

Goal: peak RSS growth <= 150 MB.

    .venv/bin/python bench/batch_memory.py [--ids 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GOAL_MB = 150
RESULTS = Path(__file__).resolve().parent / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """The highest RSS seen by a thread sampling every 10 ms."""

    def __init__(self) -> None:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


async def child(workload: str, count: int) -> dict[str, float]:
    import gc

    from asteps import MemoryStore, Runner
    from asteps._batch import BatchRun, IdReader

    async def flow(runner: Runner, **_: object) -> None:
        for i in range(5):
            await runner.step(f"s{i}", noop)

    async def noop() -> None:
        pass

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.txt"
        path.write_text("".join(f"customer-{i:06d}\n" for i in range(count)))
        store = MemoryStore()
        before_store = rss()
        if workload == "all-done":
            for i in range(count):
                for s in range(5):
                    await store.mark_done(f"customer-{i:06d}/steps/", f"s{s}", {"run_id": "r"})
        gc.collect()
        baseline = rss()
        started = time.perf_counter()
        with path.open("rb") as ids, PeakRss() as peak:
            reader = IdReader(ids, buffer=64 * 4)
            reader.start()
            summary = await BatchRun(flow, store, concurrency=64).run(reader)
        elapsed = time.perf_counter() - started
        assert summary.succeeded == count, summary.as_dict()["workflows"]
    return {
        "store_bytes": baseline - before_store,
        "growth_bytes": peak.peak - baseline,
        "elapsed_s": elapsed,
    }


def main(count: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    print(
        f"rerun of {count:,} ids x 5 steps, MemoryStore, concurrency 64 "
        "(a fresh process each, both at once)"
    )
    # Each process's RSS is its own: the two workloads run side by side.
    children = {
        workload: subprocess.Popen(
            [sys.executable, __file__, "--child", workload, "--ids", str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for workload in ("none-done", "all-done")
    }
    for workload, process in children.items():
        stdout, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"the {workload} child failed with exit code {process.returncode}")
        got = json.loads(stdout)
        results[workload] = got
        growth_mb = got["growth_bytes"] / 1e6
        verdict = "ok" if growth_mb <= GOAL_MB else "OVER GOAL"
        print(
            f"  {workload:9}: peak RSS growth {growth_mb:6.1f} MB "
            f"({got['growth_bytes'] / count:5.0f} bytes per id; goal <= {GOAL_MB} MB, {verdict})"
            f", {got['elapsed_s']:.1f} s"
        )
        if workload == "all-done":
            print(
                f"             the store's 500,000 markers, before the batch: "
                f"{got['store_bytes'] / 1e6:.1f} MB ({got['store_bytes'] / count:.0f} bytes per id)"
            )
    RESULTS.mkdir(exist_ok=True)
    out = {"ids": count, "goal_mb": GOAL_MB, **results}
    (RESULTS / "batch_memory.json").write_text(json.dumps(out, indent=2) + "\n")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--child", choices=["none-done", "all-done"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.ids))))
    else:
        main(args.ids)
