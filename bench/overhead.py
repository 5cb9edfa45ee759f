"""Cost of a step on a MemoryStore, as a ratio to a bare asyncio task.

10,000 steps are awaited concurrently (asyncio.gather) and compared with
10,000 bare tasks running the same coroutine, in the same process. Each
measurement is the best of several rounds, alternating, so that the machine's
noise hits both sides alike. Goals: executed <= 2.5x, skipped <= 1.5x.

    .venv/bin/python bench/overhead.py [--steps 10000] [--rounds 7] [--aws]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable

from asteps import MemoryStore, Runner

GOALS = {"executed": 2.5, "skipped": 1.5}


async def work() -> int:
    await asyncio.sleep(0)
    return 1


async def bare(n: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(asyncio.create_task(work()) for _ in range(n)))
    return time.perf_counter() - started


async def steps(n: int, names: list[str], *, done: bool) -> float:
    store = MemoryStore()
    runner = Runner(store, "bench", done=names if done else ())
    started = time.perf_counter()
    await asyncio.gather(*(runner.step(name, work) for name in names))
    return time.perf_counter() - started


class GcClock:
    """Time spent in the garbage collector, through gc.callbacks."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


async def measure(n: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall time of each kind, and the GC time of that best round."""
    names = [f"step.s{i}" for i in range(n)]
    kinds: dict[str, Callable[[], Awaitable[float]]] = {
        "bare": lambda: bare(n),
        "executed": lambda: steps(n, names, done=False),
        "skipped": lambda: steps(n, names, done=True),
    }
    best = dict.fromkeys(kinds, float("inf"))
    in_gc = dict.fromkeys(kinds, 0.0)
    clock = GcClock()
    for _ in range(rounds):
        for key, run in kinds.items():
            gc.collect()
            before = clock.total
            elapsed = await run()
            if elapsed < best[key]:
                best[key], in_gc[key] = elapsed, clock.total - before
    return best, in_gc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--aws",
        action="store_true",
        help="import aioboto3 first, as a service using S3Store would: a larger heap "
        "makes each full garbage collection dearer",
    )
    parser.add_argument(
        "--one",
        choices=["bare", "executed", "skipped"],
        help="run one kind once and exit (for bench/instructions.py under callgrind)",
    )
    args = parser.parse_args()
    if args.one:
        names = [f"step.s{i}" for i in range(args.steps)]
        run = {
            "bare": lambda: bare(args.steps),
            "executed": lambda: steps(args.steps, names, done=False),
            "skipped": lambda: steps(args.steps, names, done=True),
        }[args.one]
        asyncio.run(run())
        return
    if args.aws:
        import aioboto3  # noqa: F401
    best, in_gc = asyncio.run(measure(args.steps, args.rounds))
    base = best["bare"]
    per_step = {k: v * 1e6 / args.steps for k, v in best.items()}
    gc_step = {k: v * 1e6 / args.steps for k, v in in_gc.items()}
    heap = "with aioboto3 imported" if args.aws else "asteps alone"
    print(f"{args.steps} concurrent steps, best of {args.rounds} rounds ({heap}; of which GC)")
    print(f"  bare asyncio task : {per_step['bare']:6.2f} us/step ({gc_step['bare']:5.2f})")
    for key in ("executed", "skipped"):
        ratio = best[key] / base
        verdict = "ok" if ratio <= GOALS[key] else "OVER GOAL"
        print(
            f"  {key:<17} : {per_step[key]:6.2f} us/step ({gc_step[key]:5.2f})  "
            f"ratio {ratio:4.2f}x  (goal <= {GOALS[key]}x, {verdict})"
        )
    # The same runs with the collector's time taken out of both sides: how much
    # of the gap is Python work and how much is collecting the objects a step
    # keeps alive (with 10,000 in flight, a burst crosses a full-collection
    # threshold that bare tasks stay just under).
    cpu_base = best["bare"] - in_gc["bare"]
    cpu = {k: (best[k] - in_gc[k]) / cpu_base for k in ("executed", "skipped")}
    print(f"  without GC time   : executed {cpu['executed']:4.2f}x, skipped {cpu['skipped']:4.2f}x")


if __name__ == "__main__":
    main()
