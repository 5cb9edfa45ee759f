"""The SWF bridge and listener against moto's SWF over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import aioboto3
import anyio
import pytest

from asteps import EventBus, MemoryStore, Runner, SignalError
from asteps._bus import MAX_SIGNAL_NAME
from asteps._decision import ALREADY_PLAYED
from asteps.swf import (
    SWF_INPUT_LIMIT,
    EchoGuard,
    SignalDeliveryError,
    SwfSignalBridge,
    SwfSignalListener,
    swf_input,
)

from .conftest import RequestCounter, SwfWorld


def bridge(world: SwfWorld, bus: EventBus, executions, **kw) -> SwfSignalBridge:  # type: ignore[no-untyped-def]
    return SwfSignalBridge(
        bus, domain=world.domain, executions=executions, endpoint_url=world.endpoint_url, **kw
    )


def listener(world: SwfWorld, bus: EventBus, workflow_id: str, **kw) -> SwfSignalListener:  # type: ignore[no-untyped-def]
    return SwfSignalListener(
        bus, domain=world.domain, workflow_id=workflow_id, endpoint_url=world.endpoint_url, **kw
    )


async def test_step_signals_wake_the_swf_execution_for_runs_and_skips(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    store = MemoryStore()
    bus = EventBus()
    async with bridge(swf, bus, ("wf", run_id)):
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
    async with bridge(swf, bus, ("wf", None)):
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
    async with bridge(swf, bus, ("wf", run_id)):
        for i in range(25):
            await bus.publish(f"step.s{i}", i)
    assert [n for n, _ in await swf.signals("wf", run_id)] == [f"step.s{i}" for i in range(25)]


async def test_only_signals_the_patterns_cover_are_sent(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with bridge(swf, bus, ("wf", run_id), patterns=("step.export", "custom")):
        for name in ("step.export.csv", "step.crawl", "custom", "log.step"):
            await bus.publish(name, None)
    assert [n for n, _ in await swf.signals("wf", run_id)] == ["step.export.csv", "custom"]


async def test_an_oversize_payload_is_refused_and_reported_not_truncated(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    with pytest.raises(SignalDeliveryError, match=f"SWF allows {SWF_INPUT_LIMIT}") as info:
        async with bridge(swf, bus, ("wf", run_id)):
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
        async with bridge(swf, bus, ("ghost", None)):
            pass
    with pytest.raises(SignalError, match=r"'ghost' \(run r-1\)"):
        async with bridge(swf, bus, ("ghost", "r-1")):
            pass
    with pytest.raises(SignalError, match="domain 'nowhere'"):
        async with SwfSignalBridge(
            bus, domain="nowhere", executions=("wf", None), endpoint_url=swf.endpoint_url
        ):
            pass


async def test_a_signal_that_cannot_be_sent_is_reported_on_exit(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    with pytest.raises(SignalDeliveryError) as info:
        async with bridge(swf, bus, ("wf", run_id)) as b:
            await swf.client.terminate_workflow_execution(
                domain=swf.domain, workflowId="wf", runId=run_id
            )
            await bus.publish("step.late", None)
    assert [(u.execution, u.signal.name) for u in info.value.undelivered] == [
        (("wf", run_id), "step.late")
    ]
    assert b.undelivered == info.value.undelivered


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


@pytest.mark.parametrize("bridge_run_id", ["given", None])
async def test_bridged_both_ways_a_signal_is_not_echoed(
    swf: SwfWorld, bridge_run_id: str | None
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    runner = Runner(MemoryStore(), "wf", run_id=run_id, bus=bus)
    target = ("wf", run_id if bridge_run_id else None)
    guard = EchoGuard()
    async with bus.subscribe("step") as local:
        async with (
            bridge(swf, bus, target, echo_guard=guard) as b,
            listener(swf, bus, "wf", poll_interval=3600, echo_guard=guard) as li,
        ):
            await runner.step("a", lambda: 1, emit_signal=True)
            with anyio.fail_after(5):  # the bridge sends in the background
                while b.sent < 1:  # noqa: ASYNC110 (a test polling the bridge's counter)
                    await anyio.sleep(0.01)
            await swf.client.signal_workflow_execution(
                domain=swf.domain, workflowId="wf", signalName="step.from-swf", input="1"
            )
            await li.poll_once()
            await li.poll_once()
        names = [s.name for s in local.receive_nowait_all()]
    # step.a once (from the runner, not again from SWF); step.from-swf once (from SWF)
    assert names == ["step.a", "step.from-swf"]
    # and nothing was sent back to the execution it came from (the two senders
    # are independent, so only the count of each is defined, not their order)
    assert sorted(n for n, _ in await swf.signals("wf", run_id)) == ["step.a", "step.from-swf"]


async def test_a_bridge_without_a_listener_remembers_nothing(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    guard = EchoGuard()
    async with bridge(swf, bus, ("wf", run_id), echo_guard=guard):
        for i in range(10):
            await bus.publish(f"step.s{i}", i)
    assert len(await swf.signals("wf", run_id)) == 10
    assert guard.remembered == 0


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
    async with bridge(swf, EventBus(), ("wf", run_id)) as b:
        await b.send("deploy.done", {"version": "1.2"})
        with pytest.raises(SignalError, match="SWF allows"):
            await b.send("step.big", "x" * SWF_INPUT_LIMIT)
        await swf.client.terminate_workflow_execution(
            domain=swf.domain, workflowId="wf", runId=run_id
        )
        with pytest.raises(SignalDeliveryError, match=r"deploy\.again -> wf"):
            await b.send("deploy.again", None)
    assert await swf.signals("wf", run_id) == [("deploy.done", '{"version": "1.2"}')]


async def test_the_listener_stops_polling_a_closed_execution(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with listener(swf, bus, "wf", poll_interval=0.02) as li:
        await swf.client.signal_workflow_execution(
            domain=swf.domain, workflowId="wf", signalName="last", input="1"
        )
        await swf.client.terminate_workflow_execution(
            domain=swf.domain, workflowId="wf", runId=run_id
        )
        with anyio.fail_after(5):
            await bus.wait("last", include_past=True)
            while not li.closed:  # noqa: ASYNC110 (a test polling the listener's flag)
                await anyio.sleep(0.02)
        counter = RequestCounter().attach(li.client)
        await anyio.sleep(0.2)  # ten poll intervals
        assert counter.calls["GetWorkflowExecutionHistory"] == 0


async def test_a_throttled_signal_is_retried_and_delivered(swf: SwfWorld, flaky: Any) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with SwfSignalBridge(
        bus, domain=swf.domain, executions=("wf", run_id), endpoint_url=flaky.endpoint_url
    ) as b:
        flaky.fail_next(2, method="POST")  # SWF is JSON over POST
        await bus.publish("step.a", 1)
    assert flaky.failed == 2
    assert b.sent == 1
    assert await swf.signals("wf", run_id) == [("step.a", "1")]


async def test_a_cancelled_host_still_drains_what_it_published(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    published = anyio.Event()

    async def host() -> None:
        async with bridge(swf, bus, ("wf", run_id)):
            for i in range(5):
                await bus.publish(f"step.s{i}", i)
            published.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(host)
        await published.wait()
        tg.cancel_scope.cancel()
    assert [n for n, _ in await swf.signals("wf", run_id)] == [f"step.s{i}" for i in range(5)]


async def test_without_a_shared_guard_the_listener_publishes_what_the_bridge_sent(
    swf: SwfWorld,
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with bus.subscribe("step") as local:
        async with (
            bridge(swf, bus, ("wf", run_id)) as b,
            listener(swf, bus, "wf", poll_interval=3600) as li,
        ):
            await bus.publish("step.a", 1)
            with anyio.fail_after(5):  # the bridge sends in the background
                while b.sent < 1:  # noqa: ASYNC110 (a test polling the bridge's counter)
                    await anyio.sleep(0.01)
            await li.poll_once()
        signals = local.receive_nowait_all()
    assert [(s.name, s.source) for s in signals] == [("step.a", None), ("step.a", li.source)]


# -- one lifecycle: opened once, closed once, cleanup shielded ------------------


class _RecordedClient:
    """The context manager aioboto3's ``session.client()`` returns, wrapped to
    record that it was entered and that its own exit ran to the end."""

    def __init__(self, inner: Any, session: RecordingSession) -> None:
        self._inner = inner
        self._session = session

    async def __aenter__(self) -> Any:
        client = await self._inner.__aenter__()
        self._session.log.append("opened")
        if self._session.on_open is not None:
            self._session.on_open()
        return client

    async def __aexit__(self, *exc_info: Any) -> Any:
        self._session.log.append(f"closing with {exc_info[0] and exc_info[0].__name__}")
        suppress = await self._inner.__aexit__(*exc_info)
        self._session.log.append("closed")  # not reached if the close was cut short
        return suppress


class RecordingSession(aioboto3.Session):  # type: ignore[misc]
    """A real aioboto3 session whose clients say when they open and close."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.on_open: Any = None

    def client(self, *args: Any, **kwargs: Any) -> Any:
        return _RecordedClient(super().client(*args, **kwargs), self)


def open_either(kind: str, swf: SwfWorld, run_id: str, **kw: Any) -> Any:
    if kind == "bridge":
        return bridge(swf, EventBus(), ("wf", run_id), **kw)
    return listener(swf, EventBus(), "wf", **kw)


KINDS = pytest.mark.parametrize("kind", ["bridge", "listener"])


@KINDS
async def test_cancelled_while_opening_it_closes_its_client(swf: SwfWorld, kind: str) -> None:
    run_id = await swf.start("wf")
    session = RecordingSession()
    with anyio.CancelScope() as scope:
        # cancelled as soon as the client is open: the domain check is cut off
        session.on_open = scope.cancel
        async with open_either(kind, swf, run_id, session=session):
            pytest.fail("opened although cancelled")
    assert scope.cancelled_caught
    assert session.log == ["opened", "closing with CancelledError", "closed"]


@KINDS
async def test_a_cancelled_host_closes_its_client(swf: SwfWorld, kind: str) -> None:
    run_id = await swf.start("wf")
    session = RecordingSession()
    with anyio.CancelScope() as scope:
        async with open_either(kind, swf, run_id, session=session):
            scope.cancel()
            await anyio.sleep_forever()
    assert session.log == ["opened", "closing with CancelledError", "closed"]


@KINDS
async def test_the_blocks_exception_reaches_the_client_and_goes_on_as_itself(
    swf: SwfWorld, kind: str
) -> None:
    run_id = await swf.start("wf")
    session = RecordingSession()
    with pytest.raises(LookupError, match="from the block"):
        async with open_either(kind, swf, run_id, session=session):
            raise LookupError("from the block")
    assert session.log == ["opened", "closing with LookupError", "closed"]


@KINDS
async def test_it_opens_once_and_cannot_be_reopened(swf: SwfWorld, kind: str) -> None:
    run_id = await swf.start("wf")
    resource = open_either(kind, swf, run_id)
    name = type(resource).__name__
    async with resource:
        with pytest.raises(SignalError, match=f"this {name} is already open"):
            await resource.__aenter__()
    await resource.aclose()  # closing again does nothing
    with pytest.raises(SignalError, match=f"this {name} is closed and cannot be reopened"):
        await resource.__aenter__()


async def test_a_bridge_that_failed_to_open_is_closed(swf: SwfWorld) -> None:
    failed = bridge(swf, EventBus(), ("ghost", None))
    with pytest.raises(SignalError, match="no open run"):
        await failed.__aenter__()
    with pytest.raises(SignalError, match="closed and cannot be reopened"):
        await failed.__aenter__()


async def test_sending_or_polling_needs_an_open_resource(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    with pytest.raises(SignalError, match="SwfSignalBridge is not open"):
        await bridge(swf, EventBus(), ("wf", run_id)).send("step.a")
    with pytest.raises(SignalError, match="SwfSignalListener is not open"):
        await listener(swf, EventBus(), "wf").poll_once()


async def test_undelivered_signals_are_raised_once_however_often_it_closes(
    swf: SwfWorld,
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    b = bridge(swf, bus, ("wf", run_id))
    await b.__aenter__()
    await swf.client.terminate_workflow_execution(domain=swf.domain, workflowId="wf", runId=run_id)
    await bus.publish("step.late", None)
    with pytest.raises(SignalDeliveryError, match=r"step\.late"):
        await b.aclose()
    await b.aclose()
    assert [u.signal.name for u in b.undelivered] == ["step.late"]
