"""The README's twenty lines: run it twice and see the step skipped.

.venv/bin/python examples/quickstart.py
"""

import anyio

from asteps import Chain, FileStore, Group, Runner


async def export_csv() -> int:
    ...  # any coroutine: your real work
    return 1200


async def main() -> None:
    runner = Runner(FileStore(".asteps"), workflow_id="customer-42")
    runner.add_forced_steps("report", reason="template changed")  # optional
    outcome = await runner.step("export.csv", export_csv, emit_signal=True)
    print(outcome.status, outcome.result)  # "completed" 1200 the first time, "skipped" after
    await runner.step(
        "export.parquet",
        Chain(export_csv, Group(export_csv, export_csv, max_parallel=2)),
        force_steps_if_executed=["report"],  # report reruns whenever this step runs
    )
    await runner.step("report", lambda: print("sync callables run in a worker thread"))


anyio.run(main)
