"""Executed steps per second through the runner, against raw aioboto3
put_object calls per second, at the same concurrency on the same moto server.

Both sides use one aioboto3 S3 client with the same configuration and write
the same number of objects; rounds alternate and the best of each is kept.
moto runs in its own process, as in ``s3_batch.py``: in this one, its server
thread would share the interpreter's lock with the runner, and the ratio
would measure that contention more than the runner's cost per write.
Goal: runner / raw >= 0.85.

    .venv/bin/python bench/s3_limit.py [--steps 600] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import anyio

from asteps import Group, Runner, S3Store
from asteps.testing import MotoServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import moto_process

GOAL = 0.85


async def raw_puts(store: S3Store, n: int, concurrency: int, tag: str) -> float:
    body = json.dumps({"run_id": "r", "workflow_id": tag, "version": None}).encode()
    limit = anyio.Semaphore(concurrency)

    async def put(i: int) -> None:
        async with limit:
            await store.client.put_object(
                Bucket="bench", Key=f"{tag}/steps/s{i}", Body=body, ContentType="application/json"
            )

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(put, i)
    return n / (time.perf_counter() - started)


async def runner_steps(store: S3Store, n: int, concurrency: int, tag: str) -> float:
    async def work() -> None:
        await asyncio.sleep(0)

    runner = Runner(store, tag)
    started = time.perf_counter()
    await Group(*((runner.step, f"s{i}", work) for i in range(n)), max_parallel=concurrency)
    elapsed = time.perf_counter() - started
    assert len(await runner.steps_done()) == n
    return n / elapsed


async def best_rates(endpoint: str, steps: int, concurrency: int, rounds: int) -> dict[str, float]:
    async with S3Store(
        "bench",
        endpoint_url=endpoint,
        session=MotoServer(endpoint).session(),
        max_concurrency=concurrency,
    ) as store:
        await store.client.create_bucket(Bucket="bench")
        best = {"raw": 0.0, "runner": 0.0}
        for r in range(rounds):
            best["raw"] = max(best["raw"], await raw_puts(store, steps, concurrency, f"raw{r}"))
            best["runner"] = max(
                best["runner"], await runner_steps(store, steps, concurrency, f"run{r}")
            )
    return best


def main(steps: int, concurrency: int, rounds: int) -> None:
    with moto_process() as endpoint:
        best = asyncio.run(best_rates(endpoint, steps, concurrency, rounds))
    ratio = best["runner"] / best["raw"]
    print(
        f"{steps} writes at concurrency {concurrency}, best of {rounds} rounds "
        "(moto over HTTP, in its own process)"
    )
    print(f"  raw aioboto3 put_object : {best['raw']:8.1f} /s")
    print(f"  runner executed steps   : {best['runner']:8.1f} /s")
    verdict = "ok" if ratio >= GOAL else "UNDER GOAL"
    print(f"  ratio runner / raw      : {ratio:8.2f}   (goal >= {GOAL}, {verdict})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    main(args.steps, args.concurrency, args.rounds)
