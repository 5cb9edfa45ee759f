"""SwfSignalListener against moto's SWF over real HTTP."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from asteps import EventBus, MemoryStore, Runner
from asteps._json import MAX_DEPTH
from asteps.swf import SwfSignalListener
from asteps.testing import MotoServer

from .conftest import RequestCounter, SwfWorld, listener


async def test_swf_signals_reach_runner_wait_signal(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    runner = Runner(MemoryStore(), "wf", run_id=run_id)
    async with listener(swf, runner.bus, "wf", poll_interval=0.05):
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="approve", input='{"by": "ops"}'
        )
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="note", input="plain text"
        )
        approved = await runner.wait_signal("approve", timeout=5)
        note = await runner.wait_signal("note", timeout=5)
    assert approved.payload == {"by": "ops"}
    assert approved.source == f"swf:{swf.domain}/wf/{run_id}"
    assert note.payload == "plain text"


async def test_an_input_nested_too_deep_is_published_as_its_text_and_the_listener_goes_on(
    swf: SwfWorld, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = await swf.start("wf")
    runner = Runner(MemoryStore(), "wf", run_id=run_id)
    deep = "[" * 20_000  # within SWF's 32,768 characters; json.loads would recurse
    async with listener(swf, runner.bus, "wf", poll_interval=0.05):
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="hostile", input=deep
        )
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="approve", input='{"by": "ops"}'
        )
        hostile = await runner.wait_signal("hostile", timeout=5)
        approved = await runner.wait_signal("approve", timeout=5)
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="later", input="1"
        )
        later = await runner.wait_signal("later", timeout=5)
    assert hostile.payload == deep
    assert (approved.payload, later.payload) == ({"by": "ops"}, 1)
    warning = next(r.getMessage() for r in caplog.records if "hostile" in r.getMessage())
    assert f"over {MAX_DEPTH}" in warning
    assert len(warning) < 300


async def test_the_listener_never_publishes_a_signal_twice(swf: SwfWorld) -> None:
    await swf.start("wf")
    bus = EventBus()
    async with bus.subscribe("*") as seen, listener(swf, bus, "wf", poll_interval=3600) as li:
        for i in range(3):
            await swf.client.signal_workflow_execution(
                domain=swf.domain, workflowId="wf", signalName=f"s{i}", input=str(i)
            )
        await li.poll_once()  # may race the listener's own first poll: harmless
        assert await li.poll_once() == 0
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="s3", input="3"
        )
        assert await li.poll_once() == 1
        assert li.published == 4
        assert [(s.name, s.payload) for s in seen.receive_nowait_all()] == [
            ("s0", 0),
            ("s1", 1),
            ("s2", 2),
            ("s3", 3),
        ]


async def test_the_listener_stops_polling_a_closed_execution(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    # The poll loop's pauses: each hands the test an event that ends it.
    send, pauses = anyio.create_memory_object_stream[anyio.Event](1)

    async def pause(seconds: float) -> None:
        resume = anyio.Event()
        await send.send(resume)
        await resume.wait()

    async with listener(swf, bus, "wf", sleep=pause) as li, pauses:
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="last", input="1"
        )
        await swf.client.terminate_workflow_execution(
            domain=swf.domain, workflowId="wf", runId=run_id
        )
        with anyio.fail_after(5):
            async for resume in pauses:  # poll after poll, until one sees the end
                if li.closed:
                    break
                resume.set()
        assert (await bus.wait("last", include_past=True)).payload == 1
        counter = RequestCounter().attach(li.client)
        resume.set()  # the loop goes on from its last pause: it ends
        await anyio.wait_all_tasks_blocked()
        assert counter.calls["GetWorkflowExecutionHistory"] == 0
        with pytest.raises(anyio.WouldBlock):
            pauses.receive_nowait()  # and never pauses again


async def test_a_persistent_error_is_retried_with_capped_exponential_back_off(
    swf: SwfWorld, aws: MotoServer
) -> None:
    await swf.start("wf")
    waits: list[float] = []
    six_waits = anyio.Event()

    async def recorded(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            six_waits.set()
            await anyio.sleep_forever()  # until the listener closes
        await anyio.lowlevel.checkpoint()

    async with listener(swf, EventBus(), "wf", poll_interval=0.5, max_backoff=3, sleep=recorded):
        aws.reset()  # the domain is gone: every history read fails from now on
        with anyio.fail_after(30):
            await six_waits.wait()
    failing = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    # The listener's first poll may come before the reset and succeed.
    assert waits in (failing, [0.5, *failing[:-1]])


async def test_the_back_off_doubles_from_the_poll_interval_to_its_ceiling() -> None:
    li = SwfSignalListener(
        EventBus(), domain="d", workflow_id="wf", poll_interval=0.5, max_backoff=3
    )
    assert [li.backoff(n) for n in (1, 2, 3, 4, 100, 10_000)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
