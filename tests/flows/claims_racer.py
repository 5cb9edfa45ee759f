"""One runner racing others over a workflow of exclusive steps, in a process of
its own (``tests/test_claims_processes.py`` starts several).

    python claims_racer.py STORE WORKFLOW STEPS LEASE DIR [--block STEP] [--seed N]

``STORE`` is ``file:<root>`` or ``s3:<endpoint url>`` (bucket ``steps``, with
the credentials of the environment). The steps ``s0`` .. ``s<STEPS-1>`` are
submitted at once, in an order shuffled by ``--seed``, at most 16 in flight.

Everything the test synchronises on is a line appended to a file in ``DIR``
(one ``write`` on an ``O_APPEND`` descriptor: lines of several processes never
mix), never a delay:

- ``ready``: ``<pid>`` once the runner is built; the racer then waits for a
  file ``start`` to exist, so that every racer starts together.
- ``effects``: ``<step> <pid>`` when a step's work starts: its side effect.
- ``events``: ``waiting <step> <pid>`` when a step's claim is found held.

The step named by ``--block`` works until a file ``go`` exists. At the end the
racer writes ``report-<pid>.json``: its run id, each step's status, and the
messages asteps logged at WARNING or above.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import anyio

from asteps import FileStore, Runner
from asteps.stores.base import DoneStore

POLL = 0.02
"""Seconds between two looks at a file the racer waits for (a poll, not a
synchronisation by delay: it only decides how soon the file is noticed)."""


def append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


async def wait_for(path: Path) -> None:
    while not await anyio.Path(path).exists():  # noqa: ASYNC110 (another process writes it)
        await anyio.sleep(POLL)


class Events(logging.Handler):
    """Turns asteps' log records into lines the test can wait for, and keeps
    the warnings for the report."""

    def __init__(self, events: Path) -> None:
        super().__init__(logging.DEBUG)
        self.events = events
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.endswith(": claim held, waiting"):
            step = message.removeprefix("step ").removesuffix(": claim held, waiting")
            append(self.events, f"waiting {step} {os.getpid()}")
        if record.levelno >= logging.WARNING:
            self.warnings.append(message)


def open_store(spec: str) -> DoneStore:
    kind, _, where = spec.partition(":")
    if kind == "file":
        return FileStore(where)
    from asteps import S3Store  # imported only here: aioboto3 takes a second to import

    return S3Store("steps", endpoint_url=where)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("workflow")
    parser.add_argument("steps", type=int)
    parser.add_argument("lease", type=float)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--block", default="")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    where: Path = args.dir
    handler = Events(where / "events")
    asteps_logger = logging.getLogger("asteps")
    asteps_logger.addHandler(handler)
    asteps_logger.setLevel(logging.DEBUG)

    async def work(name: str) -> str:
        append(where / "effects", f"{name} {os.getpid()}")
        if name == args.block:
            await wait_for(where / "go")
        return name

    statuses: dict[str, Any] = {}
    names = [f"s{i}" for i in range(args.steps)]
    random.Random(args.seed).shuffle(names)
    async with open_store(args.store) as store:
        runner = Runner(store, args.workflow, exclusive=True, lease=args.lease)
        append(where / "ready", str(os.getpid()))
        await wait_for(where / "start")
        started = time.monotonic()
        limit = anyio.CapacityLimiter(16)

        async def one(name: str) -> None:
            async with limit:
                outcome = await runner.step(name, (work, name))
            error = None if outcome.error is None else type(outcome.error).__name__
            statuses[name] = [outcome.status, error, outcome.reasons]

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
    report = {"pid": os.getpid(), "run_id": runner.run_id, "steps": statuses}
    report.update(warnings=handler.warnings, seconds=time.monotonic() - started)
    (where / f"report-{os.getpid()}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main)
