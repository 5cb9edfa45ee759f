"""Flows the SWF worker tests run, in real worker processes."""

from __future__ import annotations

import os
from functools import partial

import anyio

from asteps import Runner


async def three_steps(runner: Runner, log: str, delay: str = "0.2", fail: str = "") -> None:
    """Steps a, b, c: each works for ``delay`` seconds, then appends
    "<workflow id> <step>" to ``log``; the step named by ``fail`` raises instead."""
    for name in ("a", "b", "c"):
        work = partial(_work, runner.workflow_id, name, log, float(delay), name == fail)
        await runner.step(name, work)


async def _work(workflow_id: str, step: str, log: str, delay: float, fail: bool) -> None:
    await anyio.sleep(delay)
    if fail:
        raise RuntimeError(f"{step} always fails")
    # One write on an O_APPEND descriptor: lines from several processes never mix.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{workflow_id} {step}\n".encode())
    finally:
        os.close(fd)


async def slow(runner: Runner, started: str, seconds: str = "30") -> None:
    """One step that creates the file ``started``, then sleeps ``seconds``."""

    async def wait() -> None:
        await anyio.Path(started).touch()
        await anyio.sleep(float(seconds))

    await runner.step("wait", wait)


async def until_released(runner: Runner, started: str, release: str) -> None:
    """One step that appends a line to ``started`` (one per attempt), then works
    until the file ``release`` exists."""

    async def wait() -> None:
        async with await anyio.open_file(started, "a") as lines:
            await lines.write(f"{runner.run_id}\n")
        while not await anyio.Path(release).exists():  # noqa: ASYNC110 (another process writes it)
            await anyio.sleep(0.05)

    await runner.step("wait", wait)


async def signalling(runner: Runner) -> None:
    """One step, ``a``, that emits its signal ``step.a``."""

    async def work() -> None:
        pass

    await runner.step("a", work, emit_signal=True)
