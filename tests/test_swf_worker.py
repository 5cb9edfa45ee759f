"""`asteps swf worker` processes against moto's SWF over HTTP: a batch spread
over two workers, a worker killed mid-run, a flow that always fails, a clean
stop. Markers go to a file store shared by the workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asteps.swf import FlowInput, SwfWorker, init_domain, prepare, submit, swf_status
from asteps.testing import FAKE_CREDENTIALS, MotoServer

FLOWS = Path(__file__).parent / "flows" / "swf_flows.py"
FLOW = f"{FLOWS}:three_steps"
DOMAIN = "asteps-batch"


@pytest.fixture
async def domain(aws: MotoServer) -> str:
    """A fresh moto with the domain and types registered."""
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        await init_domain(client, DOMAIN)
    return DOMAIN


def cli_env(aws: MotoServer) -> dict[str, str]:
    """The environment of a CLI process: moto's endpoint and fake credentials."""
    env = {**os.environ, **FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint_url}
    env.pop("AWS_PROFILE", None)
    return env


def asteps(aws: MotoServer, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the asteps command to its end."""
    return subprocess.run(
        [sys.executable, "-m", "asteps", *args],
        env=cli_env(aws),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Worker:
    """An `asteps swf worker` process; its output goes to files."""

    def __init__(self, aws: MotoServer, root: Path, name: str, *args: str) -> None:
        self.stderr_path = root / f"{name}.err"
        self.stdout_path = root / f"{name}.out"
        with self.stderr_path.open("w") as stderr, self.stdout_path.open("w") as stdout:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "asteps", "swf", "worker", *args, "--identity", name],
                env=cli_env(aws),
                stdout=stdout,
                stderr=stderr,
            )

    async def ready(self, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while "task list" not in self.stderr_path.read_text():
                assert self.process.poll() is None, self.stderr_path.read_text()
                await anyio.sleep(0.05)

    def lines(self) -> list[dict[str, Any]]:
        """The worker's --json lines: one per workflow attempt finished."""
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines() if line]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture
def workers(aws: MotoServer, tmp_path: Path) -> Iterator[list[Worker]]:
    """Start workers with ``workers.append(Worker(...))``; all are stopped after."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def worker_args(store: Path, *extra: str) -> list[str]:
    return [FLOW, "--domain", DOMAIN, "--store", f"file:{store}", "--json", "--drain", "2", *extra]


async def wait_closed(aws: MotoServer, count: int, timeout: float = 90) -> dict[str, Any]:
    """Poll `status` until ``count`` executions are closed and none is open.

    Polling also keeps moto processing its timeouts, which it does lazily."""
    with anyio.fail_after(timeout):
        while True:
            found = await swf_status(DOMAIN, session=aws.session(), endpoint_url=aws.endpoint_url)
            closed = sum(n for state, n in found.counts.items() if state != "open")
            if closed >= count and found.counts["open"] == 0:
                return found.as_dict()
            await anyio.sleep(0.3)


def submit_ids(aws: MotoServer, tmp_path: Path, ids: list[str], *params: str) -> dict[str, Any]:
    ids_file = tmp_path / f"ids-{len(ids)}-{ids[0]}.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    args = ["swf", "submit", FLOW, "--domain", DOMAIN, "--ids", str(ids_file), "--json"]
    for param in params:
        args += ["--param", param]
    done = asteps(aws, *args, "--no-progress", "--decision-timeout", "5")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def markers(store: Path) -> list[tuple[str, str]]:
    """(workflow id, step) for every marker file in the store."""
    return sorted((p.parent.parent.name, p.name) for p in store.glob("*/steps/*"))


def log_lines(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ")) for line in log.read_text().splitlines()]  # type: ignore[misc]


async def test_two_workers_complete_a_batch_and_mark_each_step_once(
    aws: MotoServer, domain: str, tmp_path: Path, workers: list[Worker]
) -> None:
    store, log = tmp_path / "store", tmp_path / "work.log"
    for name in ("w1", "w2"):
        workers.append(
            Worker(
                aws, tmp_path, name, *worker_args(store, "--heartbeat", "2", "--concurrency", "20")
            )
        )
    for worker in workers:
        await worker.ready()
    ids = [f"customer-{i}" for i in range(40)]

    submitted = submit_ids(aws, tmp_path, ids, f"log={log}", "delay=0.2")

    assert submitted["started"] == 40
    status = await wait_closed(aws, 40)
    assert status["completed"] == 40, status
    assert markers(store) == sorted((i, s) for i in ids for s in "abc")
    assert set(log_lines(log)) == {(i, s) for i in ids for s in "abc"}
    finished = [line for w in workers for line in w.lines()]
    assert {line["workflow_id"] for line in finished if line["outcome"] == "completed"} == set(ids)
    assert all(w.stop() == 0 for w in workers)
