"""The demo flow behind ``asteps demo``: a small export pipeline run three times.

1. a first run executes every step;
2. a second run skips them all (they are done);
3. a third run forces ``a`` and shows ``a.*`` rerun, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from ._bus import EventBus, Signal
from ._runner import Runner
from ._step import StepOutcome
from .stores.base import DoneStore


async def demo_flow(runner: Runner, **_: Any) -> None:
    """Fetch, then a three-part ``a`` group of steps, then a report."""

    async def fetch() -> int:
        await anyio.sleep(0.01)
        return 3

    async def work(label: str) -> str:
        await anyio.sleep(0.005)
        return label

    await runner.step("fetch", fetch, emit_signal=True)
    await runner.step("a.extract", (work, "extract"), force_steps_if_executed=["report"])
    await runner.step("a.transform", (work, "transform"))
    await runner.step("a.load", (work, "load"), emit_signal=True)
    await runner.step("report", (work, "report"), emit_signal=True)


RUNS: list[tuple[str, Callable[[Runner], None]]] = [
    ("first run: every step executes", lambda r: None),
    ("second run: every step is already done", lambda r: None),
    (
        "third run: force 'a' (a.* reruns, and report as a.extract's dependent)",
        lambda r: r.add_forced_steps("a", reason="a was fixed"),
    ),
]


async def run_demo(
    store: DoneStore,
    workflow_id: str,
    show: Callable[[str, list[StepOutcome], list[Signal]], None],
) -> None:
    """Run the demo flow three times on ``store`` and ``show`` each run."""
    for title, setup in RUNS:
        bus = EventBus()
        async with bus.subscribe("step") as signals:
            runner = Runner(store, workflow_id, bus=bus)
            setup(runner)
            await demo_flow(runner)
            show(title, runner.outcomes, signals.receive_nowait_all())
