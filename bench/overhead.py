"""Cost of a step on a MemoryStore, as a ratio to a bare asyncio task.

10,000 steps are awaited concurrently (asyncio.gather) and compared with
10,000 bare tasks running the same coroutine, in the same process. Each
measurement is the best of several rounds, alternating, so that the machine's
noise hits both sides alike. Goals: executed <= 3x, skipped <= 1.5x.

    .venv/bin/python bench/overhead.py [--steps 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

from asteps import MemoryStore, Runner

GOALS = {"executed": 3.0, "skipped": 1.5}


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


async def measure(n: int, rounds: int) -> dict[str, float]:
    names = [f"step.s{i}" for i in range(n)]
    best = {"bare": float("inf"), "executed": float("inf"), "skipped": float("inf")}
    for _ in range(rounds):
        for key, run in (
            ("bare", lambda: bare(n)),
            ("executed", lambda: steps(n, names, done=False)),
            ("skipped", lambda: steps(n, names, done=True)),
        ):
            gc.collect()
            best[key] = min(best[key], await run())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    best = asyncio.run(measure(args.steps, args.rounds))
    base = best["bare"]
    print(f"{args.steps} concurrent steps, best of {args.rounds} rounds")
    print(f"  bare asyncio task : {base * 1e6 / args.steps:7.2f} us/step")
    for key in ("executed", "skipped"):
        ratio = best[key] / base
        verdict = "ok" if ratio <= GOALS[key] else "OVER GOAL"
        print(
            f"  {key:<17} : {best[key] * 1e6 / args.steps:7.2f} us/step  "
            f"ratio {ratio:4.2f}x  (goal <= {GOALS[key]}x, {verdict})"
        )


if __name__ == "__main__":
    main()
