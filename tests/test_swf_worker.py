"""`asteps swf worker` processes against moto's SWF over HTTP: a batch spread
over two workers, a worker killed mid-run, a flow that always fails, a clean
stop. Markers go to a file store shared by the workers."""

from __future__ import annotations

import json
import logging
import signal
import socket
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import EndpointConnectionError

from asteps import FileStore
from asteps.cli.app import SAME_STOP_WITHIN
from asteps.swf import (
    FLOW_TYPE,
    FlowInput,
    FlowReport,
    RetryPolicy,
    SwfWorker,
    next_decisions,
    prepare,
    submit,
    swf_status,
)
from asteps.swf import worker as worker_module
from asteps.swf._activity import Heartbeat
from asteps.testing import MotoServer

from .conftest import FlakyProxy
from .swf_processes import (
    DOMAIN,
    FLOW,
    FLOWS,
    Worker,
    asteps,
    in_process_worker,
    until,
    wait_closed,
)


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


def submit_ids(
    aws: MotoServer, tmp_path: Path, ids: list[str], *params: str, options: tuple[str, ...] = ()
) -> dict[str, Any]:
    ids_file = tmp_path / f"ids-{len(ids)}-{ids[0]}.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    args = ["swf", "submit", FLOW, "--domain", DOMAIN, "--ids", str(ids_file), "--json", *options]
    for param in params:
        args += ["--param", param]
    done = asteps(aws, *args, "--no-progress", "--decision-timeout", "5")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


async def markers(store: Path) -> list[tuple[str, str]]:
    """(workflow id, step) for every marker in the store, as the store lists them
    (a killed writer may leave a temporary file, which is no marker)."""
    found: list[tuple[str, str]] = []
    async with FileStore(store) as files:
        async for wid in files.list_workflows():
            found += [(wid, step) for step in await files.list_done(f"{wid}/steps/")]
    return sorted(found)


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
    assert await markers(store) == sorted((i, s) for i in ids for s in "abc")
    assert set(log_lines(log)) == {(i, s) for i in ids for s in "abc"}
    finished = [line for w in workers for line in w.lines()]
    assert {line["workflow_id"] for line in finished if line["outcome"] == "completed"} == set(ids)
    assert all(w.stop() == 0 for w in workers)


async def history(aws: MotoServer, workflow_id: str) -> list[str]:
    """The event types of the (only) execution of ``workflow_id``, open or closed."""
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        infos = []
        for call in (client.list_open_workflow_executions, client.list_closed_workflow_executions):
            page = await call(domain=DOMAIN, startTimeFilter={"oldestDate": 0})
            infos += page["executionInfos"]
        # moto ignores an executionFilter: pick the execution here.
        [info] = [i for i in infos if i["execution"]["workflowId"] == workflow_id]
        events = await client.get_workflow_execution_history(
            domain=DOMAIN, execution=info["execution"]
        )
    return [e["eventType"] for e in events["events"]]


async def test_a_killed_workers_flows_time_out_and_another_worker_completes_them(
    aws: MotoServer, domain: str, tmp_path: Path, workers: list[Worker]
) -> None:
    store, log = tmp_path / "store", tmp_path / "work.log"
    fast = ("--heartbeat", "1", "--retry-delay", "0")
    # The victim can hold every flow; the survivor only some, so the victim surely runs flows.
    victim = Worker(aws, tmp_path, "victim", *worker_args(store, *fast, "--concurrency", "20"))
    survivor = Worker(aws, tmp_path, "survivor", *worker_args(store, *fast, "--concurrency", "8"))
    workers += [victim, survivor]
    for worker in workers:
        await worker.ready()
    ids = [f"crash-{i}" for i in range(20)]
    # moto starts an activity's heartbeat clock when it is scheduled, not when a
    # worker takes it: a flow queued behind the survivor's 8 slots for 3 s times
    # out unstarted, and a slow run could spend the default 3 attempts so. The
    # attempts are not what this test is about.
    attempts = ("--max-attempts", "20")
    submit_ids(aws, tmp_path, ids, f"log={log}", "delay=0.7", options=attempts)
    await until(lambda: log.exists() and bool(log.read_text()))

    victim.stop(signal.SIGKILL)  # mid-flow: step a done for some, b under way

    status = await wait_closed(aws, 20)
    assert status["completed"] == 20, status
    timed_out = [wid for wid in ids if "ActivityTaskTimedOut" in await history(aws, wid)]
    assert timed_out, "the victim ran no flow: nothing was taken over"
    done = await markers(store)
    assert done == sorted((i, s) for i in ids for s in "abc")
    assert set(done) <= set(log_lines(log)), "a marker without the work it stands for"
    assert survivor.stop() == 0


async def test_a_flow_that_always_fails_ends_failed_after_max_attempts_and_status_lists_it(
    aws: MotoServer, domain: str, tmp_path: Path, workers: list[Worker]
) -> None:
    store, log = tmp_path / "store", tmp_path / "work.log"
    args = worker_args(store, "--max-attempts", "3", "--retry-delay", "0", "--heartbeat", "2")
    workers.append(Worker(aws, tmp_path, "w", *args))
    await workers[0].ready()
    submit_ids(aws, tmp_path, ["fine"], f"log={log}", "delay=0")
    submit_ids(aws, tmp_path, ["doomed"], f"log={log}", "delay=0", "fail=b")

    await wait_closed(aws, 2)

    events = await history(aws, "doomed")
    assert events.count("ActivityTaskFailed") == 3
    assert events[-1] == "WorkflowExecutionFailed"
    done = asteps(
        aws, "swf", "status", "--domain", DOMAIN, "--json", "--failed-file", str(tmp_path / "f.txt")
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "open": 0,
        "completed": 1,
        "failed": 1,
        "timed_out": 0,
        "terminated": 0,
        "canceled": 0,
        "failed_ids": ["doomed"],
    }
    assert (tmp_path / "f.txt").read_text() == "doomed\n"
    attempts = [line for line in workers[0].lines() if line["workflow_id"] == "doomed"]
    assert [line["error"] for line in attempts] == [
        "step b failed: RuntimeError: b always fails"
    ] * 3


# -- the library: SwfWorker in this process -------------------------------------


async def start(aws: MotoServer, spec: FlowInput, *ids: str) -> None:
    summary = await submit(
        spec, ids, domain=DOMAIN, session=aws.session(), endpoint_url=aws.endpoint_url
    )
    assert summary.started == len(ids), summary


async def take_the_first_attempt(client: Any, identity: str) -> Any:
    """Decide the first decision task, then take its activity task, as a
    worker polling the task list as ``identity`` would: the attempt's task."""
    tasks = {"domain": DOMAIN, "taskList": {"name": "asteps"}, "identity": identity}
    decision = await client.poll_for_decision_task(**tasks)
    await client.respond_decision_task_completed(
        taskToken=decision["taskToken"], decisions=next_decisions(decision["events"])
    )
    return await client.poll_for_activity_task(**tasks)


async def test_an_execution_for_another_flow_fails_at_once_without_retries(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    await start(aws, prepare(f"{FLOWS}:slow", params={"started": "x"}), "elsewhere")
    worker = in_process_worker(aws, FLOW, tmp_path / "store")
    await run_worker_until(worker, partial(wait_closed, aws, 1))

    events = await history(aws, "elsewhere")
    assert events.count("ActivityTaskScheduled") == 1
    assert events[-1] == "WorkflowExecutionFailed"
    assert worker.stats.flows == {"failed": 1}


async def test_a_prefix_with_no_room_in_the_workers_s3_store_fails_at_once_without_retries(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    """S3Store refuses the runner's prefix (no room for its longest key) when
    the runner is built: input no attempt can run, so the attempt is failed
    without a retry, and nothing runs."""
    long_id = "w" * 200
    prefix = "/".join(["p" * 200] * 3) + "/" + "q" * 19 + "/{workflow_id}/"  # 824 bytes
    async with aws.session().client("s3", endpoint_url=aws.endpoint_url) as s3:
        await s3.create_bucket(Bucket="steps")
    log = tmp_path / "work.log"
    await start(aws, prepare(FLOW, params={"log": str(log), "delay": "0"}, prefix=prefix), long_id)
    worker = SwfWorker(
        FLOW,
        domain=DOMAIN,
        store=f"s3://steps/some/root?endpoint_url={aws.endpoint_url}",
        session=aws.session(),
        endpoint_url=aws.endpoint_url,
    )
    await run_worker_until(worker, partial(wait_closed, aws, 1))

    events = await history(aws, long_id)
    assert events.count("ActivityTaskScheduled") == 1
    assert events[-1] == "WorkflowExecutionFailed"
    assert worker.stats.flows == {"failed": 1}
    assert not log.exists()


async def test_an_input_that_gives_a_key_twice_fails_at_once_and_runs_nothing(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    # Which "flow" wins depends on the parser: asteps runs neither.
    params = json.dumps({"log": str(tmp_path / "work.log"), "delay": "0"})
    text = f'{{"flow": "os:system", "flow": {json.dumps(FLOW)}, "params": {params}}}'
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        await client.start_workflow_execution(
            domain=DOMAIN,
            workflowId="twice",
            workflowType={"name": FLOW_TYPE, "version": "1"},
            taskList={"name": "asteps"},
            input=text,
            executionStartToCloseTimeout="600",
            taskStartToCloseTimeout="60",
            childPolicy="TERMINATE",
        )
    worker = in_process_worker(aws, FLOW, tmp_path / "store")
    await run_worker_until(worker, partial(wait_closed, aws, 1))

    events = await history(aws, "twice")
    assert events.count("ActivityTaskScheduled") == 1
    assert events[-1] == "WorkflowExecutionFailed"
    assert worker.stats.flows == {"failed": 1}
    assert not (tmp_path / "work.log").exists()
    assert await markers(tmp_path / "store") == []


async def test_failure_details_nested_20000_deep_are_retried_not_a_worker_crash(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    spec = prepare(
        FLOW, params={"log": "/dev/null", "delay": "0"}, retry=RetryPolicy(retry_delay=0)
    )
    await start(aws, spec, "poisoned")
    # A process allowed to poll the task list takes the first attempt and fails
    # it with details of 20,000 '[' (within SWF's 32,768 characters).
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as rogue:
        activity = await take_the_first_attempt(rogue, "rogue")
        await rogue.respond_activity_task_failed(
            taskToken=activity["taskToken"], reason="rogue", details="[" * 20_000
        )
    worker = in_process_worker(aws, FLOW, tmp_path / "store")
    await run_worker_until(worker, partial(wait_closed, aws, 1))

    events = await history(aws, "poisoned")
    assert events.count("ActivityTaskFailed") == 1
    assert events[-1] == "WorkflowExecutionCompleted"
    assert worker.stats.flows == {"completed": 1}


async def test_a_decision_task_the_decider_fails_on_is_logged_and_left_to_swfs_timeout(
    aws: MotoServer,
    domain: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A bug in the decider, on the first decision task a worker takes only.
    calls = 0

    def decider_with_a_bug(events: Any, **options: Any) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a decider bug")
        return next_decisions(events, **options)

    monkeypatch.setattr(worker_module, "next_decisions", decider_with_a_bug)
    spec = prepare(FLOW, params={"log": "/dev/null", "delay": "0"})
    summary = await submit(
        spec,
        ["first", "second"],
        domain=DOMAIN,
        session=aws.session(),
        endpoint_url=aws.endpoint_url,
        decision_timeout=1,
    )
    assert summary.started == 2
    worker = in_process_worker(aws, FLOW, tmp_path / "store")
    await run_worker_until(worker, partial(wait_closed, aws, 2))

    assert worker.stats.flows == {"completed": 2}
    [failed] = [r for r in caplog.records if "cannot decide" in r.getMessage()]
    assert failed.exc_info is not None
    assert str(failed.exc_info[1]) == "a decider bug"
    workflow_id = next(w for w in ("first", "second") if f"workflow {w}:" in failed.getMessage())
    events = await history(aws, workflow_id)
    assert "DecisionTaskTimedOut" in events  # SWF offered it again
    assert events[-1] == "WorkflowExecutionCompleted"


async def test_stopping_drains_then_hands_unfinished_flows_back_to_swf(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    flag = tmp_path / "started"
    slow = f"{FLOWS}:slow"
    await start(aws, prepare(slow, params={"started": str(flag)}), "long")
    reports: list[Any] = []
    worker = in_process_worker(aws, slow, tmp_path / "store", drain=0.3, on_workflow=reports.append)
    stop = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run, stop)
            await until(flag.exists)
            stop.set()

    await assert_cancelled_and_handed_back(aws, reports, tmp_path / "store")


async def test_stop_now_during_the_drain_hands_the_running_flows_back_at_once(
    aws: MotoServer, domain: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asteps.swf.worker")
    flag, slow = tmp_path / "started", f"{FLOWS}:slow"
    await start(aws, prepare(slow, params={"started": str(flag), "seconds": "3600"}), "long")
    reports: list[Any] = []
    # An hour's drain and an hour's step: only stop_now ends them within the guard.
    worker = in_process_worker(
        aws, slow, tmp_path / "store", drain=3600, on_workflow=reports.append
    )
    stop, stop_now = anyio.Event(), anyio.Event()
    with anyio.fail_after(60):  # a hang guard: the drain alone would take an hour
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(worker.run, stop, stop_now=stop_now))
            await until(flag.exists)
            stop.set()
            await until(lambda: "get up to 3600s to finish" in caplog.text)  # draining
            stop_now.set()

    await assert_cancelled_and_handed_back(aws, reports, tmp_path / "store")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "1 flow(s) still running when asked to stop at once: cancelling them"
    ]


async def test_stop_now_alone_stops_polling_and_hands_the_running_flows_back_at_once(
    aws: MotoServer, domain: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flag, slow = tmp_path / "started", f"{FLOWS}:slow"
    await start(aws, prepare(slow, params={"started": str(flag), "seconds": "3600"}), "long")
    reports: list[Any] = []
    worker = in_process_worker(
        aws, slow, tmp_path / "store", drain=3600, on_workflow=reports.append
    )
    stop_now = anyio.Event()
    with anyio.fail_after(60):  # a hang guard: nothing else stops this worker
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(worker.run, stop_now=stop_now))
            await until(flag.exists)
            stop_now.set()

    await assert_cancelled_and_handed_back(aws, reports, tmp_path / "store")
    assert "1 flow(s) still running when asked to stop at once: cancelling them" in caplog.text


async def test_a_worker_stopped_with_nothing_running_warns_of_nothing_even_with_no_drain(
    aws: MotoServer, domain: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``drain=0`` the drain's time is up at once, but no flow runs: there
    is nothing to cancel, and no warning that "0 flow(s)" are being cancelled."""
    worker = in_process_worker(aws, f"{FLOWS}:slow", tmp_path / "store", drain=0)
    stop = anyio.Event()
    stop.set()
    with anyio.fail_after(60):  # a hang guard only
        await worker.run(stop)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def assert_cancelled_and_handed_back(
    aws: MotoServer, reports: list[Any], store: Path
) -> None:
    """The one flow a stopping worker ran was cancelled: reported stopped,
    nothing marked, and handed back to SWF as drained (its only execution
    still open, for another worker)."""
    assert [r.outcome for r in reports] == ["stopped"]
    assert reports[0].duration > 0  # how long the flow ran, not "0.00 s"
    assert await markers(store) == []  # cancelled: not marked
    await assert_handed_back(aws)


async def assert_handed_back(aws: MotoServer) -> None:
    """The only execution's attempt was handed back to SWF as drained, and no
    worker has taken it since."""
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        found = await swf_status(DOMAIN, session=aws.session(), endpoint_url=aws.endpoint_url)
        assert found.counts["open"] == 1  # handed back; no worker decided since
        page = await client.list_open_workflow_executions(
            domain=DOMAIN, startTimeFilter={"oldestDate": 0}
        )
        [info] = page["executionInfos"]
        events = await client.get_workflow_execution_history(
            domain=DOMAIN, execution=info["execution"]
        )
    [failed] = [e for e in events["events"] if e["eventType"] == "ActivityTaskFailed"]
    attributes = failed["activityTaskFailedEventAttributes"]
    assert attributes["reason"] == "the worker stopped before the flow ended"
    assert json.loads(attributes["details"])["drained"] is True  # retried without counting


async def test_a_second_signal_to_a_draining_worker_process_hands_its_flows_back_at_once(
    aws: MotoServer, domain: str, tmp_path: Path, workers: list[Worker]
) -> None:
    flag, slow, store = tmp_path / "started", f"{FLOWS}:slow", tmp_path / "store"
    worker = Worker(
        aws, tmp_path, "w", slow, "--domain", DOMAIN, "--store", f"file:{store}", "--json",
        "--drain", "3600",
    )  # fmt: skip
    workers.append(worker)
    await worker.ready()
    await start(aws, prepare(slow, params={"started": str(flag), "seconds": "3600"}), "long")
    await until(flag.exists)
    worker.process.send_signal(signal.SIGTERM)
    await until(lambda: "interrupted" in worker.stderr_path.read_text())  # draining
    await anyio.sleep(SAME_STOP_WITHIN + 0.1)  # a second signal sooner is the same stop

    assert worker.stop(signal.SIGINT, timeout=60) == 0  # the bound is a hang guard

    assert [line["outcome"] for line in worker.lines()] == ["stopped"]
    assert await markers(store) == []
    await assert_handed_back(aws)
    assert "stopping now: running flows are being cancelled" in worker.stderr_path.read_text()


def every_line_json(text: str) -> list[dict[str, Any]]:
    """Each line of ``text`` as a JSON object: fails on a line that is not one."""
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(line, dict) for line in lines), lines
    return lines


async def test_with_json_logs_submit_and_worker_write_only_json_lines_on_stderr(
    aws: MotoServer, domain: str, tmp_path: Path, workers: list[Worker]
) -> None:
    store, log = tmp_path / "store", tmp_path / "work.log"
    worker = Worker(
        aws, tmp_path, "w1", FLOW, "--domain", DOMAIN, "--store", f"file:{store}",
        "--drain", "2", "--log-format", "json",
    )  # fmt: skip
    workers.append(worker)
    await worker.ready()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("j1\n")

    submitted = asteps(
        aws, "swf", "submit", FLOW, "--domain", DOMAIN, "--ids", str(ids_file),
        "--param", f"log={log}", "--log-format", "json",
    )  # fmt: skip
    await wait_closed(aws, 1)
    assert worker.stop(signal.SIGINT) == 0

    assert submitted.returncode == 0, submitted.stderr
    every_line_json(submitted.stderr)  # no progress bar among the records
    records = every_line_json(worker.stderr_path.read_text())
    [finished] = [r for r in records if r.get("workflow_id") == "j1"]
    assert finished["status"] == "completed"
    assert finished["message"].startswith("completed j1 (steps: 3 completed)")
    [interrupted] = [r for r in records if r["message"].startswith("interrupted")]
    assert "running flows get up to 2 s to finish" in interrupted["message"]


async def run_worker_until(worker: SwfWorker, done: Callable[[], Any]) -> None:
    """Run ``worker`` until ``done()`` (awaited if it returns an awaitable), then stop it."""
    stop = anyio.Event()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run, stop)
            result = done()
            if hasattr(result, "__await__"):
                await result
            stop.set()


async def test_three_rolling_deploys_hand_a_flow_back_without_using_its_attempts(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    flow, started, release = f"{FLOWS}:until_released", tmp_path / "started", tmp_path / "go"
    # One attempt in all, and an hour's back-off: a drain that counted would fail it.
    spec = prepare(
        flow,
        params={"started": str(started), "release": str(release)},
        retry=RetryPolicy(max_attempts=1, retry_delay=3600),
    )
    await start(aws, spec, "deployed")
    reports: list[Any] = []
    for deploy in (1, 2, 3):
        worker = in_process_worker(
            aws, flow, tmp_path / "store", drain=0, on_workflow=reports.append
        )

        def attempts(n: int = deploy) -> bool:
            return started.exists() and len(started.read_text().splitlines()) == n

        await run_worker_until(worker, partial(until, attempts))
    release.touch()
    last = in_process_worker(aws, flow, tmp_path / "store", on_workflow=reports.append)
    await run_worker_until(last, partial(wait_closed, aws, 1))

    assert [r.outcome for r in reports] == ["stopped"] * 3 + ["completed"]
    assert all(r.duration > 0 for r in reports)
    events = await history(aws, "deployed")
    assert events.count("ActivityTaskScheduled") == 4
    assert "TimerStarted" not in events  # no back-off after a drain
    assert events[-1] == "WorkflowExecutionCompleted"


async def test_an_input_store_the_operator_did_not_allow_fails_at_once_and_is_never_opened(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        for wid, store in [
            ("to-a-dir", f"file://{elsewhere}"),
            ("to-a-host", f"s3://bkt?endpoint_url=http://127.0.0.1:{port}"),
            ("to-an-allowed-store", f"file:{tmp_path}/./allowed/"),
        ]:
            await start(aws, prepare(FLOW, params={"log": "/dev/null", "delay": "0"},
                                     store=store), wid)  # fmt: skip
        worker = in_process_worker(
            aws, FLOW, tmp_path / "store", allow_stores=[f"file://{tmp_path}/allowed"]
        )
        await run_worker_until(worker, partial(wait_closed, aws, 3))
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected

    assert not elsewhere.exists()
    for wid in ("to-a-dir", "to-a-host"):
        events = await history(aws, wid)
        assert events.count("ActivityTaskScheduled") == 1  # not retried
        assert events[-1] == "WorkflowExecutionFailed"
    assert await markers(tmp_path / "allowed") == [("to-an-allowed-store", s) for s in "abc"]
    assert await markers(tmp_path / "store") == []
    assert worker.stats.flows == {"failed": 2, "completed": 1}


async def test_a_completion_under_way_when_the_worker_stops_still_reaches_swf(
    aws: MotoServer, domain: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await start(aws, prepare(FLOW, params={"log": "/dev/null", "delay": "0"}), "finishing")
    stop = anyio.Event()
    session = aws.session()

    async def stop_while_completing(**_: Any) -> None:
        # The flow is done and its completion is being sent: stop the worker
        # now, and let the drain (of 0 s) cancel what still runs.
        stop.set()
        await until(lambda: "cancelling them" in caplog.text)

    session.events.register("before-call.swf.RespondActivityTaskCompleted", stop_while_completing)
    reports: list[Any] = []
    worker = SwfWorker(
        FLOW,
        domain=DOMAIN,
        store=f"file:{tmp_path / 'store'}",
        session=session,
        endpoint_url=aws.endpoint_url,
        drain=0,
        on_workflow=reports.append,
    )
    with anyio.fail_after(60):
        await worker.run(stop)

    assert [r.outcome for r in reports] == ["completed"]
    events = await history(aws, "finishing")
    assert "ActivityTaskCompleted" in events


async def run_with_swf_unreachable_for_the_bridge(
    aws: MotoServer, tmp_path: Path, workflow_id: str
) -> tuple[SwfWorker, list[FlowReport]]:
    """Run one execution (one attempt in all) on a worker with ``signals``
    whose bridge cannot reach SWF when it checks the execution."""
    # One attempt: a failure answered to SWF ends the execution at once; an
    # attempt left unanswered would only time out, with no trace of why.
    spec = prepare(
        FLOW, params={"log": "/dev/null", "delay": "0"}, retry=RetryPolicy(max_attempts=1)
    )
    await start(aws, spec, workflow_id)
    session = aws.session()

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=aws.endpoint_url)

    session.events.register("before-send.swf.DescribeWorkflowExecution", unreachable)
    reports: list[FlowReport] = []
    worker = SwfWorker(
        FLOW,
        domain=DOMAIN,
        store=f"file:{tmp_path / 'store'}",
        session=session,
        endpoint_url=aws.endpoint_url,
        signals=True,
        heartbeat=0.5,
        on_workflow=reports.append,
        client_config=AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    await run_worker_until(worker, partial(wait_closed, aws, 1))
    return worker, reports


async def test_a_signal_bridge_that_cannot_reach_swf_fails_the_attempt_saying_so(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    _, reports = await run_with_swf_unreachable_for_the_bridge(aws, tmp_path, "unreachable")

    [report] = reports
    assert not report.ok
    assert report.error is not None
    assert "cannot reach SWF" in report.error
    events = await history(aws, "unreachable")
    assert "ActivityTaskFailed" in events
    assert "ActivityTaskTimedOut" not in events
    assert await markers(tmp_path / "store") == []


async def test_an_attempt_that_cannot_open_its_bridge_is_counted_and_reported_failed(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    worker, reports = await run_with_swf_unreachable_for_the_bridge(aws, tmp_path, "no-bridge")

    assert [(r.ok, r.outcome) for r in reports] == [(False, "failed")]
    assert worker.stats.flows == {"failed": 1}


async def test_with_signals_a_flows_step_signals_reach_its_execution_with_no_deprecated_call(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    flow = f"{FLOWS}:signalling"
    await start(aws, prepare(flow), "signalled")
    worker = in_process_worker(aws, flow, tmp_path / "store", signals=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await run_worker_until(worker, partial(wait_closed, aws, 1))

    assert worker.stats.flows == {"completed": 1}
    events = await history(aws, "signalled")
    assert events.count("WorkflowExecutionSignaled") == 1
    # The worker must not use a form of its own API that goes in the next release.
    assert [str(w.message) for w in caught if w.category is DeprecationWarning] == []


async def test_a_heartbeat_that_gets_no_answer_is_abandoned_after_a_period_and_sent_again(
    aws: MotoServer, domain: str, flaky: FlakyProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # A real activity task, taken as a worker takes it.
    await start(aws, prepare(FLOW, params={"log": "/dev/null", "delay": "0"}), "hung")
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as direct:
        activity = await take_the_first_attempt(direct, "test")
    # The first heartbeat's connection hangs: the proxy never answers it.
    target = "SimpleWorkflowService.RecordActivityTaskHeartbeat"
    flaky.hold_next(1, target)
    async with aws.session().client("swf", endpoint_url=flaky.endpoint_url) as client:
        heartbeat = Heartbeat(client, activity["taskToken"], 0.2, "hung")
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat.run, tg.cancel_scope)
            # The bound only fails a heartbeat that waits for the hung answer
            # (the client's read timeout is botocore's 60 s).
            await until(lambda: flaky.forwarded[target] >= 1, timeout=10)
            tg.cancel_scope.cancel()

    assert flaky.received[target] >= 2
    assert not heartbeat.lost
    assert not heartbeat.cancel_requested
    assert any(
        "workflow hung: heartbeat got no answer within 0.2 s; trying again" in r.getMessage()
        for r in caplog.records
    )
