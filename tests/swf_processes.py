"""Helpers of the tests that run `asteps` processes and workers against moto's
SWF: the flows they run, the CLI's environment, a worker process, and waits on
what other processes write (which no event announces)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from asteps.swf import SwfWorker, swf_status
from asteps.testing import FAKE_CREDENTIALS, MotoServer

from .conftest import SWF_DOMAIN

FLOWS = Path(__file__).parent / "flows" / "swf_flows.py"
FLOW = f"{FLOWS}:three_steps"
DOMAIN = SWF_DOMAIN


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


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until ``check()`` is true (what another process writes has no event)."""
    with anyio.fail_after(timeout):
        while True:
            if check():
                return
            await anyio.sleep(0.05)


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

    async def ready(self) -> None:
        def polling() -> bool:
            assert self.process.poll() is None, self.stderr_path.read_text()
            return "task list" in self.stderr_path.read_text()

        await until(polling)

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


def in_process_worker(aws: MotoServer, flow: str, store: Path, **options: Any) -> SwfWorker:
    return SwfWorker(
        flow,
        domain=DOMAIN,
        store=f"file:{store}",
        session=aws.session(),
        endpoint_url=aws.endpoint_url,
        **options,
    )
