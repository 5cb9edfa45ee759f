"""Memory of a big batch: peak RSS growth of ``rerun`` over 1,000,000 ids, all
steps done, from an ids file and from the store's own listing (``--all``).

Each workload runs in a fresh child process, the two side by side (a
process's RSS is its own; their times, shown for information, share the
machine). The flow has ``--steps`` steps (5 by default; `make bench` runs
1, since what is measured grows with the ids, not the steps, and one step
takes two thirds of the time) and every one is done, so nothing is written:
the growth is the batch's own (the ids it remembers, the pipeline,
the summary), which is what must stay flat in the number of ids.

The store is a stand-in that answers every listing with every step done
and lists its workflows lazily, page by page as S3 does: a real store of
5,000,000 markers would cost the machine gigabytes before the batch starts,
and its own memory is not the batch's.

- file: the ids are written to a file and read back by an ``IdReader`` (as
  ``asteps rerun --ids FILE`` does);
- all: the ids come from ``discover_workflows`` (as ``asteps rerun --all``).

A thread samples the process's RSS every 10 ms; the growth is the peak
during the batch less the RSS just before it (after the ids file is written).

Goal: peak RSS growth <= 50 MB for 1,000,000 ids, from both.

    .venv/bin/python bench/batch_memory.py [--ids 1000000] [--steps 5]
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
from collections.abc import AsyncGenerator, Iterable, Mapping
from pathlib import Path
from typing import Any

GOAL_MB = 50
RESULTS = Path(__file__).resolve().parent / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")
WORKLOADS = ("file", "all")


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


def workflow_id(i: int) -> str:
    return f"customer-{i:07d}"


class AllDoneStore:
    """``count`` workflows, each with every step done; nothing is kept."""

    def __init__(self, count: int, steps: int) -> None:
        self.count = count
        self.steps = steps

    async def list_done(self, prefix: str) -> set[str]:
        await asyncio.sleep(0)  # a store call yields, as a real one does
        return {f"s{i}" for i in range(self.steps)}

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        raise AssertionError("every step is done: nothing is written")

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        raise AssertionError("nothing is unmarked")

    async def list_workflows(
        self, root: str = "", *, start_after: str | None = None
    ) -> AsyncGenerator[str, None]:
        for i in range(self.count):  # sorted, as S3 lists common prefixes
            if i % 1000 == 0:
                await asyncio.sleep(0)  # one listing request a page
            yield workflow_id(i)

    async def __aenter__(self) -> AllDoneStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def child(workload: str, count: int, steps: int) -> dict[str, float]:
    import gc

    from asteps import Runner
    from asteps._batch import BatchRun, IdReader
    from asteps.stores.discovery import discover_workflows

    async def flow(runner: Runner, **_: object) -> None:
        for i in range(steps):
            await runner.step(f"s{i}", noop)

    async def noop() -> None:
        raise AssertionError("every step is done")

    store = AllDoneStore(count, steps)
    run = BatchRun(flow, store, concurrency=64)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.txt"
        if workload == "file":
            with path.open("w") as f:
                f.writelines(f"{workflow_id(i)}\n" for i in range(count))
        gc.collect()
        baseline = rss()
        started = time.perf_counter()
        with PeakRss() as peak:
            if workload == "file":
                with path.open("rb") as ids:
                    reader = IdReader(ids, buffer=64 * 4)
                    reader.start()
                    summary = await run.run(reader)
            else:
                summary = await run.run(discover_workflows(store, "{workflow_id}/steps/"))
        elapsed = time.perf_counter() - started
        assert summary.succeeded == count, summary.as_dict()["workflows"]
        assert summary.steps == {"skipped": count * steps}, summary.steps
    return {"growth_bytes": peak.peak - baseline, "elapsed_s": elapsed}


def main(count: int, steps: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    print(
        f"rerun of {count:,} ids x {steps} steps, all done, concurrency 64 "
        "(a fresh process each, both at once)"
    )
    child_args = ["--ids", str(count), "--steps", str(steps)]
    children = {
        workload: subprocess.Popen(
            [*(sys.executable, __file__, "--child", workload), *child_args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for workload in WORKLOADS
    }
    for workload, process in children.items():
        stdout, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"the {workload} child failed with exit code {process.returncode}")
        got = json.loads(stdout)
        results[workload] = got
        growth_mb = got["growth_bytes"] / 1e6
        verdict = "ok" if growth_mb <= GOAL_MB else "OVER GOAL"
        source = "--ids FILE" if workload == "file" else "--all"
        print(
            f"  {source:10}: peak RSS growth {growth_mb:6.1f} MB "
            f"({got['growth_bytes'] / count:5.1f} bytes per id; goal <= {GOAL_MB} MB, {verdict})"
            f", {got['elapsed_s']:.1f} s ({count / got['elapsed_s']:,.0f} workflows/s)"
        )
    RESULTS.mkdir(exist_ok=True)
    out = {"ids": count, "steps": steps, "goal_mb": GOAL_MB, **results}
    (RESULTS / "batch_memory.json").write_text(json.dumps(out, indent=2) + "\n")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.ids, args.steps))))
    else:
        main(args.ids, args.steps)
