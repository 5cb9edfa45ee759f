"""Flows the tests of ``--exclusive`` run, in real CLI processes."""

from __future__ import annotations

import json
import os

import anyio

from asteps import Runner


async def settings(runner: Runner, out: str) -> None:
    """One step that writes the runner's ``exclusive`` and ``lease`` to ``out``
    (JSON): what the command line gave the runner."""

    def record() -> None:
        data = {"exclusive": runner.exclusive, "lease": runner.lease}
        with open(out, "w") as file:
            json.dump(data, file)

    await runner.step("record", record)


async def gated(runner: Runner, log: str, arrived: str, gate: str) -> None:
    """Steps a, b, c, once the file ``gate`` exists.

    On arrival (its done set listed already, by the batch) the flow appends
    "<pid> <workflow id>" to ``arrived``; then it waits for ``gate``, which the
    test creates once every process has every workflow listed. Without claims,
    every process would then run every step; each step's work appends
    "<workflow id> <step>" to ``log``.
    """
    _append(arrived, f"{os.getpid()} {runner.workflow_id}")
    while not await anyio.Path(gate).exists():  # noqa: ASYNC110 (the test creates it)
        await anyio.sleep(0.02)
    for name in ("a", "b", "c"):
        line = f"{runner.workflow_id} {name}"
        await runner.step(name, lambda line=line: _append(log, line))


def _append(path: str, line: str) -> None:
    # One write on an O_APPEND descriptor: lines from several processes never mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)
