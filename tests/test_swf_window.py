"""`submit(max_open=...)` against moto's SWF: at most N executions of a batch
open at once, starts waiting for closes, SWF's quota waited on, not refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from asteps.swf import prepare, submit
from asteps.swf._window import OpenWindow
from asteps.testing import MotoServer

from .swf_processes import DOMAIN, FLOW, in_process_worker, wait_closed


async def count_open(aws: MotoServer) -> int:
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        count, token = 0, None
        while True:
            extra = {"nextPageToken": token} if token else {}
            page = await client.list_open_workflow_executions(
                domain=DOMAIN, startTimeFilter={"oldestDate": 0}, **extra
            )
            count += len(page["executionInfos"])
            if not (token := page.get("nextPageToken")):
                return count


async def test_a_submit_keeps_at_most_max_open_executions_open_until_all_complete(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    ids = [f"w{i:03}" for i in range(300)]
    log = tmp_path / "ran.log"
    spec = prepare(FLOW, params={"log": str(log), "delay": "0"})
    workers = [
        in_process_worker(aws, FLOW, tmp_path / "store", idle_wait=0.2, identity=f"w{n}")
        for n in range(2)
    ]
    samples: list[int] = []
    waits: list[bool] = []
    submitted = anyio.Event()
    stop = anyio.Event()
    changed = anyio.Event()

    def on_id(*_: Any) -> None:
        changed.set()

    async def sample() -> None:
        # After starts (not in a loop of its own: moto serves one call at a time).
        nonlocal changed
        while not submitted.is_set():
            await changed.wait()
            changed = anyio.Event()
            samples.append(await count_open(aws))

    async def submit_all() -> Any:
        try:
            return await submit(
                spec,
                ids,
                domain=DOMAIN,
                max_open=50,
                poll_every=0.3,
                concurrency=8,
                rps=1000,
                on_wait=waits.append,
                on_id=on_id,
                session=aws.session(),
                endpoint_url=aws.endpoint_url,
            )
        finally:
            submitted.set()
            changed.set()

    summary: Any = None
    with anyio.fail_after(240):  # only a hang gets there
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(worker.run, stop)
            tg.start_soon(sample)
            summary = await submit_all()
            await wait_closed(aws, 300, timeout=200)
            stop.set()

    assert summary.started == 300
    assert not summary.refused
    assert samples
    assert 0 < max(samples) <= 50
    assert True in waits  # it waited...
    assert waits[-1] is False  # ...and said when it stopped
    assert summary.waited > 0
    ran = [line.split()[0] for line in log.read_text().splitlines() if line.endswith(" c")]
    assert sorted(set(ran)) == ids


async def test_swf_quota_reached_is_waited_on_not_refused(aws: MotoServer, domain: str) -> None:
    session = aws.session()
    faults = [2]

    def full(**_: Any) -> None:
        if faults[0]:
            faults[0] -= 1
            error = {"Code": "LimitExceededFault", "Message": "too many open executions"}
            raise ClientError({"Error": error}, "StartWorkflowExecution")

    session.events.register("before-call.swf.StartWorkflowExecution", full)
    waits: list[bool] = []
    with anyio.fail_after(60):
        summary = await submit(
            prepare(FLOW, params={"log": "/dev/null"}),
            ["a", "b"],
            domain=DOMAIN,
            concurrency=1,
            on_wait=waits.append,
            session=session,
            endpoint_url=aws.endpoint_url,
        )

    assert sorted(summary.started_ids) == ["a", "b"]
    assert not summary.refused
    assert waits == [True, False, True, False]


async def test_a_window_gives_a_slot_back_only_when_swf_lists_the_execution_closed(
    aws: MotoServer, domain: str
) -> None:
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        window = OpenWindow(client, DOMAIN, 1, tag="t1", poll_every=0.05)
        started = await client.start_workflow_execution(
            domain=DOMAIN,
            workflowId="x",
            workflowType={"name": "asteps.flow", "version": "1"},
            taskList={"name": "default"},
            executionStartToCloseTimeout="60",
            taskStartToCloseTimeout="60",
            childPolicy="TERMINATE",
            tagList=["t1"],
        )
        await window.acquire()
        window.started(started["runId"], "x")
        assert await window.poll() == 0  # still open
        await client.terminate_workflow_execution(domain=DOMAIN, workflowId="x")
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(window.watch)
                await window.acquire()  # the watch gives it back
                tg.cancel_scope.cancel()
        assert window.open == 0


@pytest.mark.parametrize("limit", [0, 100_001])
def test_a_window_is_at_most_swf_quota(limit: int) -> None:
    with pytest.raises(ValueError, match="max_open must be 1 to 100,000"):
        OpenWindow(None, DOMAIN, limit, tag="t")
