"""A per-customer export pipeline: the flow behind the CLI walkthrough of
docs/guides/batch-reruns.md.

    asteps run examples/export_pipeline.py:flow --workflow-id customer-42

Steps (dotted names group them, so `--force export` reruns every export):

    fetch.orders, fetch.customers   fetched concurrently
    export.csv, export.parquet      the two exports (parquet forces the report)
    report.email                    a summary for the customer

Set the parameter `fail=export.csv` to make a step fail, as a broken export would.
"""

from __future__ import annotations

import anyio

from asteps import Group, Runner


async def flow(runner: Runner, *, fail: str = "", delay: str = "0.01") -> None:
    pause = float(delay)

    async def work(name: str) -> str:
        await anyio.sleep(pause)
        if name == fail:
            raise RuntimeError(f"{name}: upstream returned HTTP 503")
        return f"{name} ok"

    await Group(
        runner.step("fetch.orders", (work, "fetch.orders")),
        runner.step("fetch.customers", (work, "fetch.customers")),
    )
    # A failed CSV export stops this workflow (the parquet export and the report
    # would be built on it); without bubbles_exception_on_failure the flow would
    # go on and the failure would only show in the step's outcome.
    await runner.step(
        "export.csv", (work, "export.csv"), emit_signal=True, bubbles_exception_on_failure=True
    )
    await runner.step(
        "export.parquet",
        (work, "export.parquet"),
        force_steps_if_executed=["report"],
        emit_signal=True,
    )
    await runner.step("report.email", (work, "report.email"))
