"""SwfSignalBridge against moto's SWF over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from asteps import EventBus, MemoryStore, Runner, SignalError
from asteps._bus import MAX_SIGNAL_NAME
from asteps._decision import ALREADY_PLAYED
from asteps.swf import (
    SWF_INPUT_LIMIT,
    Execution,
    SignalDeliveryError,
    SwfNotSetUp,
    SwfSignalBridge,
    swf_input,
)

from .conftest import SwfWorld, bridge


async def test_step_signals_wake_the_swf_execution_for_runs_and_skips(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    store = MemoryStore()
    bus = EventBus()
    async with bridge(swf, bus, Execution("wf", run_id)):
        first = Runner(store, "wf", run_id=run_id, bus=bus)
        await first.step("export.csv", lambda: 1, emit_signal=True)
        await first.step("quiet", lambda: 1)
        second = Runner(store, "wf", run_id=run_id, bus=bus)
        await second.step("export.csv", lambda: 1, emit_signal=True)

    signals = await swf.signals("wf", run_id)
    assert [name for name, _ in signals] == ["step.export.csv", "step.export.csv"]
    payloads = [json.loads(text) for _, text in signals]
    assert payloads == [
        {
            "workflow_id": "wf",
            "run_id": run_id,
            "step": "export.csv",
            "status": "completed",
            "forced": False,
            "reasons": [],
        },
        {
            "workflow_id": "wf",
            "run_id": run_id,
            "step": "export.csv",
            "status": "skipped",
            "forced": False,
            "reasons": [ALREADY_PLAYED],
        },
    ]


async def test_a_signal_without_run_id_goes_to_the_open_run(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with bridge(swf, bus, Execution("wf", None)):
        await bus.publish("step.a", {"n": 1})
    assert await swf.signals("wf", run_id) == [("step.a", '{"n": 1}')]


async def test_one_step_signal_fans_out_to_several_executions(swf: SwfWorld) -> None:
    runs = {wid: await swf.start(wid) for wid in ("wf-a", "wf-b", "wf-c")}
    bus = EventBus()
    async with bridge(swf, bus, list(runs.items())) as b:
        await Runner(MemoryStore(), "svc", bus=bus).step("ready", lambda: 1, emit_signal=True)
    assert b.sent == 3
    for wid, run_id in runs.items():
        assert [n for n, _ in await swf.signals(wid, run_id)] == ["step.ready"]


async def test_signals_reach_an_execution_in_publication_order(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with bridge(swf, bus, Execution("wf", run_id)):
        for i in range(25):
            await bus.publish(f"step.s{i}", i)
    assert [n for n, _ in await swf.signals("wf", run_id)] == [f"step.s{i}" for i in range(25)]


async def test_only_signals_the_patterns_cover_are_sent(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with bridge(swf, bus, Execution("wf", run_id), patterns=("step.export", "custom")):
        for name in ("step.export.csv", "step.crawl", "custom", "log.step"):
            await bus.publish(name, None)
    assert [n for n, _ in await swf.signals("wf", run_id)] == ["step.export.csv", "custom"]


async def test_an_oversize_payload_is_refused_and_reported_not_truncated(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    with pytest.raises(SignalDeliveryError, match=f"SWF allows {SWF_INPUT_LIMIT}") as info:
        async with bridge(swf, bus, Execution("wf", run_id)):
            await bus.publish("step.big", "x" * SWF_INPUT_LIMIT)
            await bus.publish("step.small", "ok")
    assert [u.signal.name for u in info.value.undelivered] == ["step.big"]
    assert [n for n, _ in await swf.signals("wf", run_id)] == ["step.small"]


def test_swf_limits_are_checked_without_truncating() -> None:
    assert swf_input("step.a", "x" * (SWF_INPUT_LIMIT - 2)) == json.dumps(
        "x" * (SWF_INPUT_LIMIT - 2)
    )
    with pytest.raises(SignalError, match=f"SWF allows {MAX_SIGNAL_NAME}"):
        swf_input("s" * (MAX_SIGNAL_NAME + 1), None)
    with pytest.raises(SignalError, match="not JSON-serialisable"):
        swf_input("step.a", object())


async def test_an_unknown_execution_or_domain_is_named(swf: SwfWorld) -> None:
    bus = EventBus()
    with pytest.raises(SignalError, match=r"'ghost'.*no open run"):
        async with bridge(swf, bus, Execution("ghost")):
            pass
    with pytest.raises(SignalError, match=r"'ghost' \(run r-1\)"):
        async with bridge(swf, bus, Execution("ghost", "r-1")):
            pass
    with pytest.raises(SwfNotSetUp, match="domain 'nowhere' does not exist"):
        async with SwfSignalBridge(
            bus, domain="nowhere", executions=Execution("wf"), endpoint_url=swf.endpoint_url
        ):
            pass


async def test_a_signal_that_cannot_be_sent_is_reported_on_exit(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    with pytest.raises(SignalDeliveryError) as info:
        async with bridge(swf, bus, Execution("wf", run_id)) as b:
            await swf.client.terminate_workflow_execution(
                domain=swf.domain, workflowId="wf", runId=run_id
            )
            await bus.publish("step.late", None)
    assert [(u.execution, u.signal.name) for u in info.value.undelivered] == [
        (("wf", run_id), "step.late")
    ]
    assert b.undelivered == info.value.undelivered


async def test_what_the_drain_timeout_cuts_off_is_reported_signal_by_signal(
    swf: SwfWorld,
) -> None:
    runs = [("wf-a", await swf.start("wf-a")), ("wf-b", await swf.start("wf-b"))]
    bus = EventBus()
    with pytest.raises(SignalDeliveryError) as info:
        async with bridge(swf, bus, runs, drain_timeout=0.05) as b:
            for i in range(300):
                await bus.publish(f"step.s{i}", i)
    undelivered = info.value.undelivered
    assert undelivered
    assert all("drain timeout" in u.reason for u in undelivered)
    # every (execution, signal) pair was either sent or reported, none twice
    reported = [(u.execution[0], u.signal.name) for u in undelivered]
    assert len(reported) == len(set(reported))
    history = {wid: [n for n, _ in await swf.signals(wid, run)] for wid, run in runs}
    for wid, _ in runs:
        sent = set(history[wid])
        missing = {f"step.s{i}" for i in range(300)} - sent
        assert missing <= {name for w, name in reported if w == wid}
    # a send cut off in flight may still have reached SWF: it is reported, and says so
    in_flight = [u for u in undelivered if "may have reached SWF" in u.reason]
    assert b.sent <= sum(len(h) for h in history.values()) <= b.sent + len(in_flight)
    assert len(in_flight) <= len(runs)


async def test_send_delivers_now_or_raises_at_once(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    async with bridge(swf, EventBus(), Execution("wf", run_id)) as b:
        await b.send("deploy.done", {"version": "1.2"})
        with pytest.raises(SignalError, match="SWF allows"):
            await b.send("step.big", "x" * SWF_INPUT_LIMIT)
        await swf.client.terminate_workflow_execution(
            domain=swf.domain, workflowId="wf", runId=run_id
        )
        with pytest.raises(SignalDeliveryError, match=r"deploy\.again -> wf"):
            await b.send("deploy.again", None)
    assert await swf.signals("wf", run_id) == [("deploy.done", '{"version": "1.2"}')]


async def test_a_throttled_signal_is_retried_and_delivered(swf: SwfWorld, flaky: Any) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with SwfSignalBridge(
        bus, domain=swf.domain, executions=Execution("wf", run_id), endpoint_url=flaky.endpoint_url
    ) as b:
        # One throttle (botocore's retry waits up to 1 s: see test_s3_store.py)
        flaky.fail_next(1, method="POST")  # SWF is JSON over POST
        await bus.publish("step.a", 1)
    assert flaky.failed == 1
    assert b.sent == 1
    assert await swf.signals("wf", run_id) == [("step.a", "1")]


async def test_a_cancelled_host_still_drains_what_it_published(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    published = anyio.Event()

    async def host() -> None:
        async with bridge(swf, bus, Execution("wf", run_id)):
            for i in range(5):
                await bus.publish(f"step.s{i}", i)
            published.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(host)
        await published.wait()
        tg.cancel_scope.cancel()
    assert [n for n, _ in await swf.signals("wf", run_id)] == [f"step.s{i}" for i in range(5)]


async def test_a_bridge_that_failed_to_open_is_closed(swf: SwfWorld) -> None:
    failed = bridge(swf, EventBus(), Execution("ghost"))
    with pytest.raises(SignalError, match="no open run"):
        await failed.__aenter__()
    with pytest.raises(RuntimeError, match="closed and cannot be reopened"):
        await failed.__aenter__()


async def test_undelivered_signals_are_raised_once_however_often_it_closes(
    swf: SwfWorld,
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    b = bridge(swf, bus, Execution("wf", run_id))
    await b.__aenter__()
    await swf.client.terminate_workflow_execution(domain=swf.domain, workflowId="wf", runId=run_id)
    await bus.publish("step.late", None)
    with pytest.raises(SignalDeliveryError, match=r"step\.late"):
        await b.aclose()
    await b.aclose()
    assert [u.signal.name for u in b.undelivered] == ["step.late"]


# -- publishers waiting for room when the bridge closes --------------------------


def hold_first_send(b: SwfSignalBridge) -> tuple[anyio.Event, anyio.Event]:
    """The bridge's first signal waits in botocore's ``before-send`` hook: ``held``
    is set once it waits there, and it goes on when ``release`` is set."""
    held, release = anyio.Event(), anyio.Event()

    async def hold(**_: Any) -> None:
        if not held.is_set():
            held.set()
            await release.wait()

    b.client.meta.events.register("before-send.swf.SignalWorkflowExecution", hold)
    return held, release


async def fill_until_publishers_wait(
    bus: EventBus, b: SwfSignalBridge, names: list[str], returned: list[str], tg: Any
) -> anyio.Event:
    """Publish ``names`` while the bridge's first send is held, until publishers
    wait for room; the event releases the send."""
    held, release = hold_first_send(b)
    await bus.publish(names[0])
    with anyio.fail_after(10):
        await held.wait()

    async def publish(name: str) -> None:
        await bus.publish(name)
        returned.append(name)

    for name in names[1:]:
        tg.start_soon(publish, name)
    await anyio.wait_all_tasks_blocked()
    assert len(returned) < len(names) - 1, "no publisher waits for room: publish more"
    return release


async def test_publishers_waiting_for_room_when_the_bridge_closes_are_sent(
    swf: SwfWorld,
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    names = [f"step.s{i}" for i in range(10)]
    returned: list[str] = []

    async def release_once_closing(release: anyio.Event) -> None:
        await anyio.wait_all_tasks_blocked()  # the close waits for the held send
        release.set()

    with anyio.fail_after(30):  # a hang guard
        async with anyio.create_task_group() as tg:
            async with bridge(swf, bus, Execution("wf", run_id), buffer=1) as b:
                release = await fill_until_publishers_wait(bus, b, names, returned, tg)
                tg.start_soon(release_once_closing, release)
    assert sorted(returned) == sorted(names[1:])
    assert b.undelivered == []
    assert sorted(n for n, _ in await swf.signals("wf", run_id)) == sorted(names)


async def test_publishers_waiting_for_room_are_reported_when_the_drain_times_out(
    swf: SwfWorld,
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    names = [f"step.s{i}" for i in range(10)]
    returned: list[str] = []
    with anyio.fail_after(30):  # a hang guard
        async with anyio.create_task_group() as tg:
            with pytest.raises(SignalDeliveryError) as info:
                # The first send is never released: the drain always times out.
                async with bridge(
                    swf, bus, Execution("wf", run_id), buffer=1, drain_timeout=0.1
                ) as b:
                    await fill_until_publishers_wait(bus, b, names, returned, tg)
    assert sorted(returned) == sorted(names[1:])
    assert sorted(u.signal.name for u in info.value.undelivered) == sorted(names)
    assert await swf.signals("wf", run_id) == []
