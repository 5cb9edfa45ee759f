"""Exclusive steps under a race: 8 processes over one workflow of 1,000 steps
on moto S3 over HTTP, against the same 8 processes with exclusive off.

- **on**: every process runs all 1,000 steps of one workflow, exclusive, in
  the same order (replicas run the same code), 16 in flight each, all
  starting together. Each step's work appends a line to a file opened with
  ``O_APPEND``: a step whose line appears twice ran twice (a duplicate).
- **off**: the same 8 processes, each given a disjoint eighth of the steps of
  another workflow, exclusive off: the work split by hand, as without claims.

Printed: duplicates (must be 0), S3 requests per executed step (counted with
botocore's event hooks in each process, summed), and the wall time per
executed step of each mode (first start to last end, on the machine's one
monotonic clock), as a ratio measured in one run. moto runs in a process of
its own, answering one request at a time (``moto_server(serial=True)``) so
that its conditional writes are atomic, as S3's are; both modes share it.

    .venv/bin/python bench/claims.py [--steps 1000] [--processes 8]

moto is the bottleneck (its one process answers every request), so the time
ratio follows the request ratio; ``make bench`` runs 250 steps (about a
minute) and the per-step figures are the same as with 1,000 (three minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

RESULTS = Path(__file__).resolve().parent / "results"
IN_FLIGHT = 16


async def child(
    endpoint: str, workflow: str, exclusive: bool, steps: list[str], files: Path
) -> None:
    """One process: run ``steps`` of ``workflow``; print its counts as JSON."""
    from asteps import Runner, S3Store

    calls: Counter[str] = Counter()

    def on_call(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    effects = os.open(files / "effects", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def work(name: str) -> None:
        os.write(effects, f"{workflow} {name}\n".encode())

    async with S3Store("claims", endpoint_url=endpoint) as store:
        store.client.meta.events.register("before-call.s3", on_call)
        runner = Runner(store, workflow, exclusive=exclusive)
        (files / f"ready-{os.getpid()}").touch()
        while not await anyio.Path(files / "start").exists():  # noqa: ASYNC110 (the parent writes it)
            await anyio.sleep(0.01)
        started = time.monotonic()
        limit = anyio.CapacityLimiter(IN_FLIGHT)
        statuses: Counter[str] = Counter()

        async def one(name: str) -> None:
            async with limit:
                statuses[(await runner.step(name, (work, name))).status] += 1

        async with anyio.create_task_group() as tg:
            for name in steps:
                tg.start_soon(one, name)
        ended = time.monotonic()
    os.close(effects)
    print(json.dumps({"started": started, "ended": ended, "calls": calls, "statuses": statuses}))


def race(endpoint: str, workflow: str, exclusive: bool, parts: list[list[str]]) -> dict[str, Any]:
    """Start one process per part, let them go together, and sum what they saw."""
    from asteps.testing import FAKE_CREDENTIALS

    files = Path(tempfile.mkdtemp())
    env = {**os.environ, **FAKE_CREDENTIALS}
    children = []
    for part in parts:
        argv = [sys.executable, __file__, "child", endpoint, workflow, str(int(exclusive))]
        argv += [str(files), ",".join(part)]
        children.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env))
    # Start-up (imports, the S3 client) is not timed: all start when all are ready.
    while len(list(files.glob("ready-*"))) < len(parts):
        if any(c.poll() not in (None, 0) for c in children):
            raise RuntimeError("a racer failed to start")
        time.sleep(0.05)
    (files / "start").touch()
    reports = []
    for c in children:
        out, _ = c.communicate()
        if c.returncode != 0:
            raise RuntimeError(f"a racer failed ({c.returncode})")
        reports.append(json.loads(out))
    lines = (files / "effects").read_text().splitlines()
    calls: Counter[str] = sum((Counter(r["calls"]) for r in reports), Counter())
    statuses: Counter[str] = sum((Counter(r["statuses"]) for r in reports), Counter())
    return {
        "seconds": max(r["ended"] for r in reports) - min(r["started"] for r in reports),
        "executed": statuses["completed"],
        "statuses": dict(statuses),
        "runs": len(lines),
        "duplicates": len(lines) - len(set(lines)),
        "requests": dict(sorted(calls.items())),
        "requests_total": sum(calls.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import boto3
    from _servers import serial_moto_process

    from asteps.testing import FAKE_CREDENTIALS

    names = [f"s{i}" for i in range(args.steps)]
    n = args.processes
    with serial_moto_process() as endpoint:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket="claims")
        on = race(endpoint, "on", True, [names] * n)
        off = race(endpoint, "off", False, [names[i::n] for i in range(n)])
    result: dict[str, Any] = {"steps": args.steps, "processes": n, "in_flight": IN_FLIGHT}
    for mode, run in (("on", on), ("off", off)):
        run["requests_per_executed_step"] = round(run["requests_total"] / run["executed"], 2)
        run["requests_per_step_per_process"] = round(run["requests_total"] / args.steps / n, 2)
        run["ms_per_executed_step"] = round(1000 * run["seconds"] / run["executed"], 3)
        result[mode] = run
    result["time_ratio_on_off"] = round(on["seconds"] / off["seconds"], 2)
    print(f"{n} processes, {args.steps} steps, {IN_FLIGHT} in flight each, moto S3 over HTTP")
    for mode, run in (("exclusive on ", on), ("exclusive off", off)):
        print(
            f"  {mode}: executed {run['executed']}, duplicates {run['duplicates']}, "
            f"{run['requests_per_executed_step']} requests per executed step "
            f"({run['requests_per_step_per_process']} per step per process), "
            f"{run['ms_per_executed_step']} ms per executed step"
        )
        print(f"    requests: {run['requests']}")
    print(f"  time on / off: {result['time_ratio_on_off']}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "claims.json").write_text(json.dumps(result, indent=2) + "\n")
    if on["duplicates"] or off["duplicates"] or on["executed"] != args.steps:
        raise SystemExit("a step ran twice, or not once: exclusive steps are broken")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        _, _, endpoint, workflow, exclusive, files, steps = sys.argv
        anyio.run(child, endpoint, workflow, exclusive == "1", steps.split(","), Path(files))
    else:
        main()
