"""Batch reruns at the store's limit: workflows per second through BatchRun
over a store that answers every call after a delay, against that store's limit.

The store is ``asteps.testing.LatencyStore`` over a ``MemoryStore``: each call
waits a latency drawn per call (constant, or exponential with mean L), with
at most C calls in flight; the batch runs at concurrency C. Each workflow is
5 sequential steps:

- (a) all done: one listing per workflow, limit C / L workflows/s;
- (b) none done: one listing and five marker writes, limit C / (6 L).

Also measured: the CPU-bound rate (L = 0), which caps the rate whatever the
latency. It is measured first for every C (3,000 workflows): these are the
other cells' caps, and the plot's. A goal cell then runs in rounds of an
L = 0 run followed by the cell's own run, both of 10,000 workflows: 3 rounds
where the cell may be CPU-bound (its first CPU-bound rate is under 1.25
times its limit; this machine's runs vary by about 25 %), 1 otherwise. Its
figures are those of the round whose rate / cap is the median.

Goals: >= 0.8 of the limit with exponential latency at C = 64 and C = 256,
L = 20 ms, for (a) and (b), or of the CPU-bound rate where that is lower.

Runs of the goal cells (exponential latency) use 10,000 workflows; the
other cells use enough workflows for about 0.6 s at the limit (at least 10 C,
at most 10,000), so that the whole grid runs in about two minutes. Results go to
bench/results/batch_latency.json and the plot to bench/results/batch_latency.png.

``--no-constant`` leaves out the constant-latency cells (none is a goal cell
or in the plot; ``make bench`` leaves them out, about 20 s).

    .venv/bin/python bench/batch_latency.py [--quick] [--no-plot] [--no-constant]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from asteps import MemoryStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _batches import batch, fill, limit

RESULTS = Path(__file__).resolve().parent / "results"
LATENCIES_MS = (5, 20, 50)
CONCURRENCIES = (16, 64, 256)
GOAL = 0.8
GOAL_CELLS = {(64, 20), (256, 20)}  # (C, L in ms), exponential, both workloads
FULL = 10_000
SECONDS_PER_CELL = 0.6
CPU_BOUND_ROUNDS = 3
MAY_BE_CPU_BOUND = 1.25  # a cell whose CPU-bound rate is under this times its limit


async def measure(
    workload: str, c: int, latency: float, distribution: str, n: int, seed: int = 1
) -> float:
    """Workflows per second of one batch of ``n`` workflows."""
    ids = [f"w{i:05d}" for i in range(n)]
    inner = MemoryStore()
    if workload == "all-done":
        await fill(inner, ids)
    summary = await batch(inner, workload, c, latency, distribution, ids, n, seed)
    return n / summary.elapsed


async def goal_rates(
    workload: str, c: int, latency: float, n: int, cpu: float, lim: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """A goal cell's rate and cap, from the round whose rate / cap is the
    median, and every round's (CPU-bound, cell) pair. Each round runs L = 0 then
    the cell, so that the two share the machine's state; there are more rounds
    where the cell may be CPU-bound."""
    rounds = CPU_BOUND_ROUNDS if cpu < MAY_BE_CPU_BOUND * lim else 1
    pairs = []
    for _ in range(rounds):
        bound = await measure(workload, c, 0.0, "constant", n)
        rate = await measure(workload, c, latency, "exponential", n)
        pairs.append((bound, rate))
    by_ratio = sorted(pairs, key=lambda pair: pair[1] / min(lim, pair[0]))
    bound, rate = by_ratio[len(by_ratio) // 2]
    return rate, min(lim, bound), pairs


def workflows_for(
    workload: str, c: int, latency_ms: int, distribution: str, cpu_rate: float
) -> int:
    if (c, latency_ms) in GOAL_CELLS and distribution == "exponential":
        return FULL
    rate = min(limit(workload, c, latency_ms / 1000), cpu_rate)
    return int(min(FULL, max(10 * c, rate * SECONDS_PER_CELL)))


async def main(quick: bool, plot: bool, constant: bool = True) -> None:
    started = time.perf_counter()
    results: dict[str, Any] = {"cpu": {}, "cells": []}
    print("BatchRun over LatencyStore(MemoryStore), 5 sequential steps per workflow")
    print("CPU-bound rate (L = 0), workflows/s:")
    cpu: dict[tuple[str, int], float] = {}
    for workload in ("all-done", "none-done"):
        for c in CONCURRENCIES:
            n = 2_000 if quick else 3_000  # the goal cells measure it again, in full
            cpu[workload, c] = await measure(workload, c, 0.0, "constant", n)
            results["cpu"][f"{workload}/{c}"] = round(cpu[workload, c], 1)
            print(f"  {workload:9} C={c:<4} {cpu[workload, c]:8,.0f}")
    print()
    header = (
        f"{'workload':9} {'C':>4} {'L ms':>5} {'dist':>11} {'n':>6} {'wf/s':>8} "
        f"{'limit':>8} {'ratio':>6} {'of cap':>6}"
    )
    print(header)
    for workload in ("all-done", "none-done"):
        for latency_ms in LATENCIES_MS:
            for c in CONCURRENCIES:
                for distribution in ("constant", "exponential") if constant else ("exponential",):
                    goal_cell = (c, latency_ms) in GOAL_CELLS and distribution == "exponential"
                    if quick and not goal_cell:
                        continue
                    n = workflows_for(workload, c, latency_ms, distribution, cpu[workload, c])
                    if quick:
                        n = min(n, 3_000)
                    lim = limit(workload, c, latency_ms / 1000)
                    rounds: list[tuple[float, float]] = []
                    if goal_cell:
                        rate, cap, rounds = await goal_rates(
                            workload, c, latency_ms / 1000, n, cpu[workload, c], lim
                        )
                    else:
                        rate = await measure(workload, c, latency_ms / 1000, distribution, n)
                        cap = min(lim, cpu[workload, c])  # what can be reached at all
                    cell = {
                        "workload": workload,
                        "concurrency": c,
                        "latency_ms": latency_ms,
                        "distribution": distribution,
                        "workflows": n,
                        "rate": round(rate, 1),
                        "limit": round(lim, 1),
                        "ratio_to_limit": round(rate / lim, 3),
                        "ratio_to_cap": round(rate / cap, 3),
                        "goal": goal_cell,
                    }
                    if rounds:
                        cell["rounds"] = [
                            {"cpu_bound": round(b, 1), "rate": round(r, 1)} for b, r in rounds
                        ]
                    results["cells"].append(cell)
                    mark = ""
                    if goal_cell:
                        verdict = "goal ok" if rate / cap >= GOAL else "UNDER GOAL"
                        seen = ", ".join(f"{b:,.0f}/{r:,.0f}" for b, r in rounds)
                        mark = f"  {verdict} (median of rounds, CPU-bound/cell: {seen})"
                    print(
                        f"{workload:9} {c:>4} {latency_ms:>5} {distribution:>11} {n:>6} "
                        f"{rate:>8,.0f} {lim:>8,.0f} {rate / lim:>6.2f} {rate / cap:>6.2f}{mark}"
                    )
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_latency.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n'of cap' = rate / min(limit, CPU-bound rate); goal >= {GOAL} in the goal cells")
    print(f"wrote {RESULTS / 'batch_latency.json'} ({results['elapsed_s']} s)")
    if plot and not quick:
        draw(results, RESULTS / "batch_latency.png")
        print(f"wrote {RESULTS / 'batch_latency.png'}")


def draw(results: dict[str, Any], path: Path) -> None:
    """Workflows/s against C for each L (exponential latency), one panel per
    workload, with each limit drawn dashed and the CPU-bound rate dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    colors = {5: "tab:blue", 20: "tab:orange", 50: "tab:green"}
    for ax, workload in zip(axes, ("all-done", "none-done"), strict=True):
        for latency_ms in LATENCIES_MS:
            cells = [
                x
                for x in results["cells"]
                if x["workload"] == workload
                and x["latency_ms"] == latency_ms
                and x["distribution"] == "exponential"
            ]
            cs = [x["concurrency"] for x in cells]
            color = colors[latency_ms]
            ax.plot(cs, [x["rate"] for x in cells], "o-", color=color, label=f"L = {latency_ms} ms")
            ax.plot(cs, [x["limit"] for x in cells], "--", color=color, alpha=0.6)
        cpu = [results["cpu"][f"{workload}/{c}"] for c in CONCURRENCIES]
        ax.plot(CONCURRENCIES, cpu, ":", color="black", label="CPU-bound (L = 0)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(CONCURRENCIES, [str(c) for c in CONCURRENCIES])
        ax.set_xlabel("concurrency C (calls in flight)")
        limit_text = "C / L" if workload == "all-done" else "C / (6 L)"
        ax.set_title(f"{workload}: limit {limit_text} dashed")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("workflows / s (exponential latency, mean L)")
    axes[0].legend()
    fig.suptitle("asteps rerun (BatchRun) over a store with latency, 5 steps per workflow")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the goal cells only, smaller")
    parser.add_argument("--no-constant", action="store_true", help="exponential latency only")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.quick, not args.no_plot, not args.no_constant))
