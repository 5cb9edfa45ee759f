"""``asteps rerun`` over real HTTP with latency, against raw aioboto3 at the same
concurrency: how close a batch of all-done workflows gets to the listing rate
the network allows.

moto runs in its own process, behind a LatencyProxy (asteps.testing) in
another, which holds every request back 20 ms. 2,000 workflows of one done
step are rerun with ``asteps rerun --ids FILE`` (a subprocess; the rate is
the summary's, so process start-up is not counted): one ListObjectsV2 per
workflow, all skipped. (One marker each, not five: moto scans every key of
the bucket for each listing, so more keys would only slow moto down.) The
raw side makes the same 2,000 ListObjectsV2 calls (same prefixes,
``Delimiter="/"``) with aioboto3, through the same proxy, at the same
concurrency, with the same client configuration. Each round runs raw then
asteps, on a moto already warm from filling the bucket; with more than one
round (--rounds) the best of each side is kept. Goal: asteps / raw >= 0.85.

    .venv/bin/python bench/s3_batch.py [--workflows 2000] [--concurrency 64] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from asteps import S3Store
from asteps._aws import client_config
from asteps.testing import FAKE_CREDENTIALS, MotoServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import moto_process, proxy_process

GOAL = 0.85
LATENCY = 0.020
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ENV = {"PATH": "/usr/bin:/bin", **FAKE_CREDENTIALS}


async def populate(endpoint: str, ids: list[str]) -> None:
    """One done marker per workflow, written straight to moto (no latency)."""
    session = MotoServer(endpoint).session()
    async with S3Store("bench", endpoint_url=endpoint, session=session) as store:
        await store.client.create_bucket(Bucket="bench")
        limit = anyio.Semaphore(32)

        async def mark(wid: str) -> None:
            async with limit:
                await store.mark_done(f"{wid}/steps/", "only", {"run_id": "r"})

        async with anyio.create_task_group() as tg:
            for wid in ids:
                tg.start_soon(mark, wid)


async def raw_lists(
    endpoint: str, ids: list[str], concurrency: int, expected_keys: int = 1
) -> float:
    """ListObjectsV2 calls per second, ``concurrency`` in flight; each listing
    must find ``expected_keys`` keys."""
    session = MotoServer(endpoint).session()
    config = client_config(None, max_pool_connections=concurrency)
    async with session.client("s3", endpoint_url=endpoint, config=config) as client:
        await client.list_objects_v2(Bucket="bench", Prefix="warm-up/", Delimiter="/")
        source = iter(ids)

        async def worker() -> None:
            for wid in source:
                page = await client.list_objects_v2(
                    Bucket="bench", Prefix=f"{wid}/steps/", Delimiter="/"
                )
                assert len(page.get("Contents", ())) == expected_keys

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        return len(ids) / (time.perf_counter() - started)


def asteps_rerun(
    endpoint: str,
    ids_file: Path,
    concurrency: int,
    flow: str = "one_step",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The JSON summary of ``asteps rerun FLOW --ids FILE`` (flows.py's FLOW)."""
    store = f"s3://bench?endpoint_url={endpoint}&max_concurrency={concurrency}"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "asteps"),
            "rerun",
            f"{BENCH / 'flows.py'}:{flow}",
            "--ids",
            str(ids_file),
            "--store",
            store,
            "--concurrency",
            str(concurrency),
            "--no-progress",
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        check=True,
    )
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def rerun_rate(endpoint: str, ids_file: Path, concurrency: int) -> float:
    """Workflows per second of ``asteps rerun``, from its own summary (process
    start-up not counted), every step skipped."""
    summary = asteps_rerun(endpoint, ids_file, concurrency)
    assert summary["steps"] == {"skipped": int(summary["workflows"]["succeeded"])}
    return float(summary["workflows"]["succeeded"]) / float(summary["elapsed"])


def main(workflows: int, concurrency: int, rounds: int) -> dict[str, float]:
    ids = [f"customer-{i:05d}" for i in range(workflows)]
    with moto_process() as moto, proxy_process(moto, LATENCY) as proxy:
        asyncio.run(populate(moto, ids))
        with tempfile.TemporaryDirectory() as tmp:
            ids_file = Path(tmp) / "ids.txt"
            ids_file.write_text("".join(f"{wid}\n" for wid in ids))
            best = {"raw": 0.0, "asteps": 0.0}
            for _ in range(rounds):
                best["raw"] = max(best["raw"], asyncio.run(raw_lists(proxy, ids, concurrency)))
                best["asteps"] = max(best["asteps"], rerun_rate(proxy, ids_file, concurrency))
    ratio = best["asteps"] / best["raw"]
    limit = concurrency / LATENCY
    print(
        f"{workflows} all-done workflows (one step each), concurrency {concurrency}, "
        f"{LATENCY * 1000:.0f} ms per request (proxy), moto in its own process, "
        + (f"best of {rounds} rounds" if rounds > 1 else "one round")
    )
    print(f"  limit C / L                      : {limit:8.0f} /s")
    print(f"  raw aioboto3 list_objects_v2     : {best['raw']:8.0f} /s")
    print(f"  asteps rerun (workflows)         : {best['asteps']:8.0f} /s")
    verdict = "ok" if ratio >= GOAL else "UNDER GOAL"
    print(f"  ratio asteps / raw               : {ratio:8.2f}   (goal >= {GOAL}, {verdict})")
    result = {
        "workflows": workflows,
        "concurrency": concurrency,
        "latency_ms": LATENCY * 1000,
        "limit": limit,
        "raw_per_s": round(best["raw"], 1),
        "asteps_per_s": round(best["asteps"], 1),
        "ratio": round(ratio, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "s3_batch.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    main(args.workflows, args.concurrency, args.rounds)
