"""An async service running many workflows at once on one shared S3Store.

Each workflow's done list is fetched once (one ListObjectsV2), all workflows
concurrently; each executed step costs one PutObject; skipped steps cost
nothing. Runs against an in-process moto server, no AWS account needed:

    .venv/bin/python examples/s3_service.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from asteps import Group, Runner, S3Store
from asteps.testing import MotoServer, moto_server

CUSTOMERS = [f"customer-{i}" for i in range(1, 21)]


async def handle(store: S3Store, customer: str) -> list[str]:
    """One workflow: three steps, two of them concurrent."""
    runner = Runner(store, customer)

    async def fetch(kind: str) -> str:
        await asyncio.sleep(0.01)  # your real I/O here
        return f"{kind} of {customer}"

    await Group(
        runner.step("fetch.orders", (fetch, "orders")),
        runner.step("fetch.invoices", (fetch, "invoices")),
    )
    await runner.step("export.csv", (fetch, "export"))
    return [o.status for o in runner.outcomes]


async def serve_all(store: S3Store) -> Counter[str]:
    """Handle every customer at once; count the S3 calls it took."""
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    store.client.meta.events.register("before-call.s3", count)
    try:
        await asyncio.gather(*(handle(store, c) for c in CUSTOMERS))
    finally:
        store.client.meta.events.unregister("before-call.s3", count)
    return calls


async def main(moto: MotoServer) -> None:
    async with S3Store("exports", endpoint_url=moto.endpoint_url, session=moto.session()) as store:
        await store.client.create_bucket(Bucket="exports")
        for label in ("first pass", "second pass"):
            calls = await serve_all(store)
            print(f"{label}: {len(CUSTOMERS)} workflows, S3 calls {dict(sorted(calls.items()))}")


if __name__ == "__main__":
    with moto_server() as server:
        asyncio.run(main(server))
