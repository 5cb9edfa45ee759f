"""Exclusive steps across real processes, on the FileStore and on S3 (moto over
HTTP): racing runners run each step once, a killed holder's step is taken over,
and a holder paused past its lease does not mark.

Each runner is ``tests/flows/claims_racer.py`` in a process of its own. The test
synchronises only on lines the racers append to files ("I am inside step s0",
"step s0's claim is held, I wait"), each wait bounded by ``TIMEOUT``, which only
a hang reaches: nothing here depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from asteps import FileStore, S3Store
from asteps.testing import FAKE_CREDENTIALS

RACER = Path(__file__).parent / "flows" / "claims_racer.py"
TIMEOUT = 600.0
"""Seconds any one wait may take: only a hang gets there. Eight racers of 100
steps make about 3,000 requests to a moto server that answers one at a time:
on a machine running other suites too this took over 60 s (the bound was 60),
so the bound is ten times what a quiet machine needs, not a measure."""
POLL = 0.02
"""Seconds between two looks at a file the test waits for."""
WORKFLOW = "wf"
PREFIX = f"{WORKFLOW}/steps/"


@dataclass
class World:
    """A store the racers share, the same store open in the test to check it,
    and the directory of the files the racers write."""

    spec: str
    store: Any
    dir: Path
    processes: list[anyio.abc.Process] = field(default_factory=list)

    async def start(self, steps: int, lease: float, *, block: str = "", seed: int = 0) -> Any:
        """A racer over steps s0..s<steps-1>; its output goes to files in ``dir``."""
        n = len(self.processes)
        argv = [sys.executable, str(RACER), self.spec, WORKFLOW, str(steps), str(lease)]
        argv += [str(self.dir), "--block", block, "--seed", str(seed)]
        with (self.dir / f"out-{n}.txt").open("wb") as out:
            process = await anyio.open_process(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **FAKE_CREDENTIALS}
            )
        self.processes.append(process)
        return process

    def lines(self, name: str) -> list[str]:
        path = self.dir / name
        return path.read_text().splitlines() if path.exists() else []

    async def wait_line(self, name: str, line: str) -> None:
        """Until file ``name`` holds ``line``."""
        while line not in self.lines(name):  # noqa: ASYNC110 (other processes write it)
            await anyio.sleep(POLL)

    async def wait_lines(self, name: str, count: int) -> None:
        while len(self.lines(name)) < count:  # noqa: ASYNC110 (other processes write it)
            await anyio.sleep(POLL)

    def touch(self, name: str) -> None:
        (self.dir / name).touch()

    async def finished(self, process: anyio.abc.Process) -> dict[str, Any]:
        """Wait for ``process`` to exit cleanly; its report."""
        code = await process.wait()
        n = self.processes.index(process)
        assert code == 0, (self.dir / f"out-{n}.txt").read_text()
        return dict(json.loads((self.dir / f"report-{process.pid}.json").read_text()))

    def effects(self) -> Counter[str]:
        """How many times each step's work started."""
        return Counter(line.split()[0] for line in self.lines("effects"))


@asynccontextmanager
async def opened(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    files = tmp_path / "files"
    files.mkdir()
    if kind == "file":
        root = tmp_path / "store"
        async with FileStore(root) as store:
            yield World(f"file:{root}", store, files)
    else:
        aws = request.getfixturevalue("serial_moto")  # in this process
        aws.reset()
        async with S3Store("steps", endpoint_url=aws.endpoint_url, session=aws.session()) as s3:
            await s3.client.create_bucket(Bucket="steps")
            yield World(f"s3:{aws.endpoint_url}", s3, files)


@pytest.fixture(params=["file", "s3"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async with opened(request.param, request, tmp_path) as world:
        yield world


@pytest.fixture
async def s3_world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async with opened("s3", request, tmp_path) as world:
        yield world


@pytest.fixture
async def file_world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async with opened("file", request, tmp_path) as world:
        yield world


@contextmanager
def bounded(world: World) -> Iterator[None]:
    """At most ``TIMEOUT`` seconds; whatever happens, no racer outlives the test."""
    try:
        with anyio.fail_after(TIMEOUT):
            yield
    finally:
        for process in world.processes:
            if process.returncode is None:
                process.kill()  # also ends a stopped one


def takeovers(report: dict[str, Any]) -> list[float]:
    """The seconds a racer saw each claim it took over unchanged (from its log)."""
    found = []
    for message in report["warnings"]:
        if "took over a claim unchanged for" in message:
            found.append(float(message.rsplit(" for ", 1)[1].removesuffix(" s")))
    return found


# -- racing ------------------------------------------------------------------------


@pytest.mark.parametrize("racers", [2, 8])
async def test_racing_processes_run_each_of_100_steps_once_and_mark_it_once(
    world: World, racers: int
) -> None:
    steps = 100
    names = {f"s{i}" for i in range(steps)}
    with bounded(world):
        # A lease no run gets near: a claim is only ever released, never taken over.
        processes = [await world.start(steps, 60.0, seed=i) for i in range(racers)]
        await world.wait_lines("ready", racers)
        world.touch("start")  # every runner is built: they start together
        reports = [await world.finished(p) for p in processes]

    assert world.effects() == Counter(names)  # each step's work ran exactly once
    completed: dict[str, str] = {}
    for report in reports:
        assert set(report["steps"]) == names
        for name, (status, error, _) in report["steps"].items():
            assert status in ("completed", "skipped"), (name, status, error)
            if status == "completed":
                assert name not in completed  # marked by one runner only
                completed[name] = report["run_id"]
    assert set(completed) == names
    assert await world.store.list_done(PREFIX) == names
    for name, run_id in completed.items():  # the one marker is the runner's that ran it
        marker = await world.store.read_marker(PREFIX, name)
        assert marker["run_id"] == run_id


# -- a holder killed mid-step ------------------------------------------------------


async def test_a_killed_holders_step_is_taken_over_and_runs_once_more(world: World) -> None:
    # FileStore: the kernel drops a dead holder's lock, so the claim is free at
    # once, and a lease of ten minutes shows it (the test is bounded by one).
    # S3: the claim stays until a waiter has seen it unchanged for a lease.
    lease = 600.0 if world.spec.startswith("file:") else 1.5
    world.touch("start")  # no start line: each racer begins when started
    with bounded(world):
        holder = await world.start(1, lease, block="s0")
        await world.wait_line("effects", f"s0 {holder.pid}")  # inside the step
        holder.kill()
        assert await holder.wait() == -signal.SIGKILL
        waiter = await world.start(1, lease)
        report = await world.finished(waiter)

    assert world.lines("effects") == [f"s0 {holder.pid}", f"s0 {waiter.pid}"]
    assert report["steps"]["s0"][0] == "completed"
    assert await world.store.list_done(PREFIX) == {"s0"}
    assert (await world.store.read_marker(PREFIX, "s0"))["run_id"] == report["run_id"]
    if world.spec.startswith("file:"):
        assert takeovers(report) == []  # free at once: nothing to take over
    else:
        [unchanged] = takeovers(report)
        assert unchanged >= lease  # on the waiter's own clock


# -- a holder paused past its lease ------------------------------------------------


async def test_a_holder_paused_past_its_lease_does_not_mark_and_the_takeover_stands(
    s3_world: World,
) -> None:
    world = s3_world
    lease = 1.5
    world.touch("start")
    with bounded(world):
        holder = await world.start(1, lease, block="s0")
        await world.wait_line("effects", f"s0 {holder.pid}")  # inside the step
        holder.send_signal(signal.SIGSTOP)
        # The waiter sees the claim unchanged for a lease, takes it over, runs
        # the step and marks it, all while the holder is stopped.
        waiter = await world.start(1, lease)
        taken = await world.finished(waiter)
        world.touch("go")  # the holder's work may now end
        holder.send_signal(signal.SIGCONT)
        paused = await world.finished(holder)

    assert taken["steps"]["s0"][0] == "completed"
    assert paused["steps"]["s0"][:2] == ["failed", "ClaimLost"]
    assert world.lines("effects") == [f"s0 {holder.pid}", f"s0 {waiter.pid}"]
    assert (await world.store.read_marker(PREFIX, "s0"))["run_id"] == taken["run_id"]


async def test_on_a_file_store_a_paused_holder_keeps_its_claim_and_the_waiter_waits(
    file_world: World,
) -> None:
    # On the FileStore the kernel keeps a stopped process's lock: a waiter
    # cannot take the claim over however long the pause, it simply waits.
    world = file_world
    lease = 0.3
    world.touch("start")
    with bounded(world):
        holder = await world.start(1, lease, block="s0")
        await world.wait_line("effects", f"s0 {holder.pid}")
        holder.send_signal(signal.SIGSTOP)
        waiter = await world.start(1, lease)
        await world.wait_line("events", f"waiting s0 {waiter.pid}")
        # Not a synchronisation but the pause itself: at least three leases
        # long, however loaded the machine, and all the while the kernel keeps
        # the stopped holder's lock, so the waiter cannot take the claim.
        await anyio.sleep(3 * lease)
        assert waiter.returncode is None
        world.touch("go")
        holder.send_signal(signal.SIGCONT)
        held = await world.finished(holder)
        waited = await world.finished(waiter)

    assert held["steps"]["s0"][0] == "completed"
    assert waited["steps"]["s0"][0] == "skipped"  # done by the holder, seen as its marker
    assert world.lines("effects") == [f"s0 {holder.pid}"]
    assert (await world.store.read_marker(PREFIX, "s0"))["run_id"] == held["run_id"]
