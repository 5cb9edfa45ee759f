"""``--exclusive`` and ``--lease`` on `asteps run`, `rerun` and `swf worker`:
the flags reach the runners, two reruns started as real processes over the
same ids run each step once, and bad leases exit 2 naming the option."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from asteps import MemoryStore
from asteps._batch import BatchRun
from asteps.cli import main
from asteps.errors import ClaimsNotSupported
from asteps.swf import prepare, submit
from asteps.testing import MotoServer

from .swf_processes import DOMAIN, Worker, until

FLOWS = Path(__file__).parent / "flows" / "exclusive_flows.py"
SETTINGS = f"{FLOWS}:settings"
GATED = f"{FLOWS}:gated"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASTEPS_STORE", raising=False)
    return CliRunner()


def settings_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.read_text())
    return data


# -- the flags reach the runner ----------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), {"exclusive": False, "lease": 60.0}),
        (("--exclusive",), {"exclusive": True, "lease": 60.0}),
        (("--exclusive", "--lease", "7.5"), {"exclusive": True, "lease": 7.5}),
        # A lease alone is for the steps the flow itself makes exclusive.
        (("--lease", "2"), {"exclusive": False, "lease": 2.0}),
    ],
)
def test_run_gives_exclusive_and_lease_to_the_runner(
    cli: CliRunner, tmp_path: Path, flags: tuple[str, ...], expected: dict[str, Any]
) -> None:
    out = tmp_path / "settings.json"
    args = ["run", SETTINGS, "--workflow-id", "w1", "--param", f"out={out}", *flags]
    done = cli.invoke(main, args, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert settings_of(out) == expected


def test_rerun_gives_exclusive_and_lease_to_every_runner(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("w1\n")
    out = tmp_path / "settings.json"
    args = ["rerun", SETTINGS, "--ids", "ids.txt", "--param", f"out={out}", "--no-progress"]
    done = cli.invoke(main, [*args, "--exclusive", "--lease", "3"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert settings_of(out) == {"exclusive": True, "lease": 3.0}


def test_plan_has_no_exclusive_flag_a_dry_run_claims_nothing(cli: CliRunner) -> None:
    done = cli.invoke(main, ["plan", SETTINGS, "--workflow-id", "w1", "--exclusive"])
    assert done.exit_code == 2
    assert "--exclusive" in done.output


async def test_a_batch_refuses_exclusive_on_a_store_without_claims_before_any_workflow() -> None:
    class Markers:  # a DoneStore of one's own, without claims
        async def list_done(self, prefix: str) -> set[str]:
            return set()

        async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None: ...

        async def unmark(self, prefix: str, names: Any) -> None: ...

        async def aclose(self) -> None: ...

    async def flow(runner: Any) -> None: ...

    with pytest.raises(ClaimsNotSupported, match="cannot hold claims"):
        BatchRun(flow, Markers(), exclusive=True)  # type: ignore[arg-type]
    BatchRun(flow, Markers(), exclusive=True, dry_run=True)  # type: ignore[arg-type]
    BatchRun(flow, MemoryStore(), exclusive=True)


@pytest.fixture
def worker_processes() -> Iterator[list[Worker]]:
    """Start workers with ``worker_processes.append(Worker(...))``; all are killed after."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


async def test_a_worker_started_with_exclusive_runs_its_flows_with_exclusive_steps(
    aws: MotoServer, domain: str, tmp_path: Path, worker_processes: list[Worker]
) -> None:
    out = tmp_path / "settings.json"
    spec = prepare(SETTINGS, params={"out": str(out)})
    store = f"file:{tmp_path / 'store'}"
    args = [SETTINGS, "--domain", DOMAIN, "--store", store, "--exclusive", "--lease", "9"]
    worker_processes.append(Worker(aws, tmp_path, "w1", *args))
    workers = worker_processes
    await workers[0].ready()
    summary = await submit(
        spec, ["one"], domain=DOMAIN, session=aws.session(), endpoint_url=aws.endpoint_url
    )
    assert summary.started == 1, summary
    await until(out.exists, timeout=60)
    await until(lambda: out.read_text().endswith("}"), timeout=10)
    assert settings_of(out) == {"exclusive": True, "lease": 9.0}
    assert workers[0].stop() == 0


# -- two real processes ------------------------------------------------------------


class Rerun:
    """An `asteps rerun` process; its output goes to files."""

    def __init__(self, root: Path, name: str, args: Sequence[str]) -> None:
        self.err = root / f"{name}.err"
        self.out = root / f"{name}.out"
        with self.err.open("w") as stderr, self.out.open("w") as stdout:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "asteps", "rerun", *args],
                cwd=root,
                stdout=stdout,
                stderr=stderr,
            )

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)


@pytest.fixture
def reruns() -> Iterator[list[Rerun]]:
    started: list[Rerun] = []
    yield started
    for rerun in started:
        if rerun.process.poll() is None:
            rerun.process.kill()
            rerun.process.wait()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_two_exclusive_reruns_over_the_same_ids_run_each_step_once(
    tmp_path: Path, reruns: list[Rerun]
) -> None:
    ids = [f"w{i:02}" for i in range(20)]
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    log, arrived, gate = tmp_path / "log", tmp_path / "arrived", tmp_path / "gate"
    args = [
        GATED,
        "--ids",
        "ids.txt",
        "--store",
        f"file:{tmp_path / 'store'}",
        *("--param", f"log={log}", "--param", f"arrived={arrived}", "--param", f"gate={gate}"),
        *("--concurrency", str(len(ids)), "--no-progress", "--json", "--exclusive"),
    ]
    reruns.extend(Rerun(tmp_path, name, args) for name in ("first", "second"))

    # Both processes have listed every workflow (none done) before any step
    # runs: without claims, each would run every step.
    def all_arrived() -> bool:
        for rerun in reruns:
            assert rerun.process.poll() is None, rerun.err.read_text()
        return len(lines(arrived)) == 2 * len(ids)

    await until(all_arrived, timeout=60)
    gate.touch()
    for rerun in reruns:
        assert await anyio.to_thread.run_sync(rerun.wait) == 0, rerun.err.read_text()

    runs = Counter(lines(log))
    assert runs == Counter(f"{wid} {step}" for wid in ids for step in "abc")
    totals: Counter[str] = Counter()
    for rerun in reruns:
        totals.update(json.loads(rerun.out.read_text())["steps"])
    assert totals == {"completed": 3 * len(ids), "skipped": 3 * len(ids)}


# -- bad values ----------------------------------------------------------------------


COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "run": lambda tmp: ["run", SETTINGS, "--workflow-id", "w1", "--param", "out=x"],
    "rerun": lambda tmp: ["rerun", SETTINGS, "--ids", "-", "--param", "out=x"],
    "swf worker": lambda tmp: ["swf", "worker", SETTINGS, "--domain", DOMAIN],
}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "0", "-1", "0.01", "1e9", "soon"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_lease_that_is_not_a_finite_number_in_bounds_exits_2_naming_the_option(
    cli: CliRunner, tmp_path: Path, command: str, value: str
) -> None:
    done = cli.invoke(main, [*COMMANDS[command](tmp_path), "--exclusive", "--lease", value])
    assert done.exit_code == 2, done.output
    assert "--lease" in done.output
    assert not (tmp_path / ".asteps").exists()
