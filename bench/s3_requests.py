"""S3 requests per workflow run: asteps against its budget, and against
simpleflow's own step tasks doing the same work.

Budget: ceil(markers / 1000) ListObjectsV2 pages, plus one PutObject per
executed step; nothing for a skipped step. Requests are counted with
botocore's event hooks on a real moto server over HTTP.

simpleflow's column executes simpleflow 0.36.0's GetStepsDoneTask (which a
Step submits before deciding) and MarkStepDoneTask (after an executed step)
through boto3, as its workflows do, one listing per step.

    .venv/bin/python bench/s3_requests.py
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import Counter
from typing import Any

import boto3

from asteps import Runner, S3Store
from asteps.testing import FAKE_CREDENTIALS, moto_server

CASES = [(5, 5), (50, 50), (200, 200), (100, 1500)]  # (executed, skipped)
SIMPLEFLOW_MAX = 100  # simpleflow lists per step: 200 + 200 steps take over a minute


def count_events(events: Any, service: str, counter: Counter[str]) -> Any:
    """Count API calls by operation name; returns the handler, to unregister it."""

    def on_call(event_name: str, **_: Any) -> None:
        counter[event_name.rsplit(".", 1)[-1]] += 1

    events.register(f"before-call.{service}", on_call)
    return on_call


async def asteps_requests(store: S3Store, wid: str, executed: int, skipped: int) -> Counter[str]:
    prefix = f"{wid}/steps/"
    await asyncio.gather(*(store.mark_done(prefix, f"old.{i}", {}) for i in range(skipped)))
    counter: Counter[str] = Counter()
    handler = count_events(store.client.meta.events, "s3", counter)
    runner = Runner(store, wid)
    for i in range(skipped):
        await runner.step(f"old.{i}", lambda: None)
    for i in range(executed):
        await runner.step(f"new.{i}", lambda: None)
    store.client.meta.events.unregister("before-call.s3", handler)
    return counter


def simpleflow_requests(
    endpoint: str, wid: str, executed: int, skipped: int
) -> Counter[str] | None:
    try:
        from simpleflow import storage
        from simpleflow.step.tasks import GetStepsDoneTask, MarkStepDoneTask
    except ImportError:
        return None
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    storage.BUCKET_CACHE.clear()
    storage.BUCKET_LOCATIONS_CACHE.clear()
    counter: Counter[str] = Counter()
    boto3.DEFAULT_SESSION = None
    session = boto3.setup_default_session()
    del session
    count_events(boto3._get_default_session().events, "s3", counter)
    path = f"{wid}/steps"
    for i in range(skipped):
        MarkStepDoneTask("steps", path, f"old.{i}").execute()
    counter.clear()
    for _ in range(skipped):  # each Step lists before deciding
        GetStepsDoneTask("steps", path).execute()
    for i in range(executed):
        GetStepsDoneTask("steps", path).execute()
        MarkStepDoneTask("steps", path, f"new.{i}").execute()
    return counter


async def main() -> None:
    # simpleflow's boto3 reads credentials from the environment: this process
    # is a benchmark that talks to moto only, so it sets moto's fake ones.
    for key, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    with moto_server() as server:
        async with S3Store(
            "steps", endpoint_url=server.endpoint_url, session=server.session()
        ) as store:
            await store.client.create_bucket(Bucket="steps")
            print("S3 requests for one workflow run (executed + skipped steps)")
            print(
                f"{'executed':>8} {'skipped':>8} | {'budget':>7} {'asteps':>7} "
                f"({'List':>4} {'Put':>5} {'other':>5}) | {'simpleflow':>10} {'ratio':>7}"
            )
            for n, (executed, skipped) in enumerate(CASES):
                wid = f"wf{n}"
                got = await asteps_requests(store, wid, executed, skipped)
                budget = math.ceil(skipped / 1000) + executed
                total = sum(got.values())
                other = total - got["ListObjectsV2"] - got["PutObject"]
                sf = None
                if executed + skipped <= SIMPLEFLOW_MAX:
                    sf = await asyncio.to_thread(
                        simpleflow_requests, server.endpoint_url, f"sf{n}", executed, skipped
                    )
                sf_total = sum(sf.values()) if sf is not None else None
                ratio = f"{sf_total / total:6.1f}x" if sf_total else "   n/a"
                print(
                    f"{executed:>8} {skipped:>8} | {budget:>7} {total:>7} "
                    f"({got['ListObjectsV2']:>4} {got['PutObject']:>5} {other:>5}) | "
                    f"{sf_total if sf_total is not None else 'n/a':>10} {ratio}"
                )
                assert total == budget, f"asteps made {total} requests, budget {budget}"


if __name__ == "__main__":
    asyncio.run(main())
