"""Flows the benchmarks run through ``asteps rerun``."""

from __future__ import annotations

from typing import Any

from asteps import Runner


async def _noop() -> None:
    pass


async def five_steps(runner: Runner, **_: Any) -> None:
    """Five sequential steps that do nothing (the store is what is measured)."""
    for i in range(5):
        await runner.step(f"s{i}", _noop)


async def one_step(runner: Runner, **_: Any) -> None:
    """One step that does nothing."""
    await runner.step("only", _noop)
