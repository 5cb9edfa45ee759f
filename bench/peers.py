"""The same workload through asteps and the tools users would pick instead.

One workflow of N trivial steps (each returns its number), run three times:
first run (every step executes), all-done rerun (every step is skipped or
found complete), forced rerun of everything. The peers' forced reruns are
timed only with ``--forced``: they are not goals, and take about a minute
that `make bench` leaves out. Each tool runs in its own child
process (its own settings, no shared state); times are wall seconds inside
that process, after its start-up. A rerun that takes under a second is the
median of 5.

- asteps on its FileStore (steps awaited one after another, and all gathered
  at once), and on S3Store against moto over HTTP;
- simpleflow 0.36.0: ``Step`` in a workflow run by its local executor, on
  the same kind of moto S3 (forced = ``force=True`` on each step);
- Luigi 3.8: one task per step with a ``LocalTarget``, local scheduler, one
  worker, in two forms: the N tasks given to ``luigi.build``, and Luigi's
  own idiom for a pipeline, one ``WrapperTask`` that requires them (rerun =
  the completeness check; forced = outputs deleted first: Luigi has no force);
- Prefect 3.9: one task per step with ``cache_policy=INPUTS`` and persisted
  results on local disk (rerun = cache hits; forced = ``refresh_cache=True``);
  its ephemeral API server is started by a warm-up flow before timing.

Goals, each against the peer's faster form in the same run: all-done rerun of
2,000 steps on the FileStore >= 5x faster than Luigi awaited in turn and >= 2x
gathered, first run gathered >= 5x; all-done rerun >= 100x faster than
simpleflow on moto and than Prefect's cache hits (200 steps). Peers come from
the ``bench`` extra; one that cannot be imported is reported as such and the
others are measured.

    .venv/bin/python bench/peers.py [--big 2000] [--small 200] [--forced]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def rerun_time(fn: Callable[[], Any]) -> float:
    """One rerun, or the median of 5 when one takes under a second."""
    first = timed(fn)
    if first >= 1.0:
        return first
    return statistics.median([first, *(timed(fn) for _ in range(4))])


PEERS_FORCED = False
"""Whether the peers' forced reruns are timed (``--forced``): not goals, and
about a minute of `make bench`, which leaves them out; asteps' are always timed."""


def three_runs(
    first: Callable[[], Any],
    rerun: Callable[[], Any],
    forced: Callable[[], Any],
    *,
    peer: bool = True,
) -> dict[str, float]:
    runs = {"first": timed(first), "rerun": rerun_time(rerun)}
    if PEERS_FORCED or not peer:
        runs["forced"] = timed(forced)
    return runs


# -- asteps -------------------------------------------------------------------------


def asteps_runs(n: int, kind: str, gathered: bool = False) -> dict[str, float]:
    import asyncio

    from asteps import FileStore, Runner, S3Store
    from asteps.testing import moto_server

    def number(i: int) -> Any:
        async def run() -> int:
            return i

        return run

    async def workflow(store: Any, force: bool) -> None:
        runner = Runner(store, "peers")
        if force:
            runner.add_forced_steps("*", reason="bench")
        if gathered:  # every step submitted at once, as independent steps would be
            await asyncio.gather(*(runner.step(f"s{i}", number(i)) for i in range(n)))
            return
        for i in range(n):
            await runner.step(f"s{i}", number(i))

    if kind == "file":
        root = tempfile.mkdtemp()
        store = FileStore(root)

        def run(force: bool) -> None:
            asyncio.run(workflow(store, force))

        return three_runs(lambda: run(False), lambda: run(False), lambda: run(True), peer=False)

    with moto_server() as server:

        async def on_s3() -> dict[str, float]:
            # The store (one aioboto3 client) is opened once, as a service
            # does: its start-up is not part of a workflow's run.
            async with S3Store(
                "peers", endpoint_url=server.endpoint_url, session=server.session()
            ) as store:
                await store.client.create_bucket(Bucket="peers")

                async def timed_async(force: bool) -> float:
                    started = time.perf_counter()
                    await workflow(store, force)
                    return time.perf_counter() - started

                first = await timed_async(False)
                reruns = [await timed_async(False)]
                if reruns[0] < 1.0:
                    reruns += [await timed_async(False) for _ in range(4)]
                forced = await timed_async(True)
            return {"first": first, "rerun": statistics.median(reruns), "forced": forced}

        return asyncio.run(on_s3())


# -- simpleflow ---------------------------------------------------------------------


def simpleflow_runs(n: int) -> dict[str, float]:
    from asteps.testing import FAKE_CREDENTIALS, moto_server

    os.environ.update(FAKE_CREDENTIALS)  # a child process that talks to moto only
    with moto_server() as server:
        os.environ["AWS_ENDPOINT_URL_S3"] = server.endpoint_url
        import boto3
        from simpleflow import Workflow, activity
        from simpleflow.local import Executor
        from simpleflow.step.workflow import WorkflowStepMixin

        boto3.client("s3", endpoint_url=server.endpoint_url).create_bucket(Bucket="peers")

        @activity.with_attributes(task_list="peers", version="1")
        def number(i: int) -> int:
            return i

        class Steps(Workflow, WorkflowStepMixin):  # type: ignore[misc]
            name = "peers"
            version = "1"
            task_list = "peers"

            def get_step_bucket(self) -> str:
                return "peers"

            def run(self, n: int, force: bool = False) -> None:
                for i in range(n):
                    self.submit(self.step(f"s{i}", number_task(i), force=force))

        from simpleflow.task import ActivityTask

        def number_task(i: int) -> Any:
            return ActivityTask(number, i)

        def run(force: bool) -> None:
            Executor(Steps).run({"kwargs": {"n": n, "force": force}})

        return three_runs(lambda: run(False), lambda: run(False), lambda: run(True))


# -- Luigi --------------------------------------------------------------------------


def luigi_runs(n: int, wrapper: bool = False) -> dict[str, float]:
    import logging

    import luigi

    logging.getLogger("luigi").setLevel(logging.ERROR)
    logging.getLogger("luigi-interface").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp())

    class StepTask(luigi.Task):  # type: ignore[misc]
        i = luigi.IntParameter()

        def output(self) -> Any:
            return luigi.LocalTarget(str(root / f"s{self.i}"))

        def run(self) -> None:
            with self.output().open("w") as f:
                f.write(str(self.i))

    class Pipeline(luigi.WrapperTask):  # type: ignore[misc]
        """Luigi's own idiom for a pipeline: one task that requires the others.
        When every output exists, luigi.build checks complete() and returns."""

        def requires(self) -> list[Any]:
            return [StepTask(i=i) for i in range(n)]

    def build() -> None:
        ok = luigi.build(
            [Pipeline()] if wrapper else [StepTask(i=i) for i in range(n)],
            local_scheduler=True,
            workers=1,
            log_level="ERROR",
        )
        assert ok

    def forced() -> None:
        for path in root.iterdir():
            path.unlink()
        build()

    return three_runs(build, build, forced)


# -- Prefect ------------------------------------------------------------------------


def prefect_runs(n: int) -> dict[str, float]:
    home = tempfile.mkdtemp()
    os.environ.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_LOCAL_STORAGE_PATH": f"{home}/results",
            "PREFECT_LOGGING_LEVEL": "ERROR",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            # a loaded 2-core machine can take longer than the default 20 s
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        }
    )
    os.environ.pop("PREFECT_API_URL", None)
    from prefect import flow, task
    from prefect.cache_policies import INPUTS

    @task(cache_policy=INPUTS, persist_result=True)
    def number(i: int) -> int:
        return i

    refreshed = number.with_options(refresh_cache=True)

    @flow
    def steps(n: int, force: bool = False) -> None:
        step = refreshed if force else number
        for i in range(n):
            step(i)

    @flow
    def warm_up() -> None:
        pass

    warm_up()  # starts the ephemeral API server: not part of the figures
    return three_runs(lambda: steps(n), lambda: steps(n), lambda: steps(n, force=True))


PEERS: dict[str, tuple[str, Callable[[int], dict[str, float]]]] = {
    "asteps-file": ("asteps FileStore, awaited in turn", lambda n: asteps_runs(n, "file")),
    "asteps-file-gathered": (
        "asteps FileStore, gathered",
        lambda n: asteps_runs(n, "file", gathered=True),
    ),
    "asteps-s3": ("asteps S3Store (moto)", lambda n: asteps_runs(n, "s3")),
    "simpleflow": ("simpleflow 0.36 Step, local executor (moto)", simpleflow_runs),
    "luigi": ("Luigi 3.8, N top-level tasks, LocalTarget", luigi_runs),
    "luigi-wrapper": (
        "Luigi 3.8, one WrapperTask, LocalTarget",
        lambda n: luigi_runs(n, wrapper=True),
    ),
    "prefect": ("Prefect 3.9, INPUTS cache, local results", prefect_runs),
}


def check_goals(
    by: dict[tuple[str, int], dict[str, Any]], big: int, small: int
) -> list[dict[str, Any]]:
    """Each goal of the benchmarks page: asteps' time against the peer's, the
    peer in whichever of its forms was faster in this run."""

    def fastest(tools: list[str], n: int, run: str) -> float | None:
        times = [by[(t, n)][run] for t in tools if run in by.get((t, n), {})]
        return min(times) if times else None

    def ratio(peer: float | None, ours: float | None) -> float | None:
        return None if peer is None or ours is None else round(peer / ours, 2)

    luigi = ["luigi", "luigi-wrapper"]
    goals = [
        (f"all-done rerun, {big} steps awaited in turn, vs Luigi", "asteps-file", big,
         luigi, "rerun", 5.0),
        (f"all-done rerun, {big} steps gathered, vs Luigi", "asteps-file-gathered", big,
         luigi, "rerun", 2.0),
        (f"first run, {big} steps gathered, vs Luigi", "asteps-file-gathered", big,
         luigi, "first", 5.0),
        (f"all-done rerun, {small} steps on moto S3, vs simpleflow", "asteps-s3", small,
         ["simpleflow"], "rerun", 100.0),
        (f"all-done rerun, {small} steps, vs Prefect's cache", "asteps-file", small,
         ["prefect"], "rerun", 100.0),
    ]  # fmt: skip
    return [
        {
            "what": what,
            "goal": goal,
            "ratio": ratio(fastest(peers, n, run), fastest([ours], n, run)),
        }
        for what, ours, n, peers, run, goal in goals
    ]


def in_child(tool: str, n: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            tool,
            "--steps",
            str(n),
            *(["--forced"] if PEERS_FORCED else []),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # The figures are the child's last JSON line; a tool that is noisy on its
    # way out (Prefect stopping its ephemeral server) still measured.
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    why = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": why[:200]}


def main(big: int, small: int) -> None:
    plan = [
        ("asteps-file", big),
        ("asteps-file-gathered", big),
        ("luigi", big),
        ("luigi-wrapper", big),
        ("asteps-file", small),
        ("asteps-s3", small),
        ("simpleflow", small),
        ("prefect", small),
    ]
    rows: list[dict[str, Any]] = []
    for tool, n in plan:
        got = in_child(tool, n)
        rows.append({"tool": tool, "steps": n, **got})
        print(f"  measured {tool} x {n}: {got}", file=sys.stderr)
    by = {(r["tool"], r["steps"]): r for r in rows}
    print("\nOne workflow of N trivial steps; seconds (rerun: median of 5 when under 1 s)")
    print(f"{'tool':44} {'N':>5} {'first':>8} {'rerun':>9} {'forced':>8}")
    for row in rows:
        label = PEERS[row["tool"]][0]
        if "error" in row:
            print(f"{label:44} {row['steps']:>5}   not run: {row['error']}")
            continue
        print(
            f"{label:44} {row['steps']:>5} {row['first']:8.3f} {row['rerun']:9.4f} "
            + (f"{row['forced']:8.3f}" if "forced" in row else f"{'-':>8}")
        )
    goals = check_goals(by, big, small)
    print("\nGoals: how many times faster asteps is (each peer in its faster form)")
    for goal in goals:
        if goal["ratio"] is None:
            print(f"  {goal['what']}: not measured")
            continue
        verdict = "ok" if goal["ratio"] >= goal["goal"] else "UNDER GOAL"
        print(f"  {goal['what']}: {goal['ratio']:.1f}x (goal >= {goal['goal']:g}x, {verdict})")
    rows.append({"goals": goals})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=2000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument(
        "--forced",
        action="store_true",
        help="time the peers' forced reruns too (not goals; about a minute more)",
    )
    parser.add_argument("--child", choices=sorted(PEERS), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    PEERS_FORCED = args.forced
    if args.child:
        print(json.dumps(PEERS[args.child][1](args.steps)))
    else:
        main(args.big, args.small)
