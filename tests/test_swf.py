"""The SWF bridge and listener together against moto's SWF over real HTTP: echo
guard and lifecycle."""

from __future__ import annotations

from typing import Any

import aioboto3
import anyio
import pytest

from asteps import EventBus, MemoryStore, Runner
from asteps.swf import EchoGuard, Execution, SignalDeliveryError, SwfSignalBridge

from .conftest import SwfWorld, bridge, listener


def swf_answered(b: SwfSignalBridge) -> anyio.Event:
    """Set when SWF has answered the bridge's next signal, through botocore's
    own ``after-call`` hook: the signal is in the execution's history then."""
    answered = anyio.Event()
    b.client.meta.events.register(
        "after-call.swf.SignalWorkflowExecution", lambda **_: answered.set()
    )
    return answered


@pytest.mark.parametrize("bridge_run_id", ["given", None])
async def test_bridged_both_ways_a_signal_is_not_echoed(
    swf: SwfWorld, bridge_run_id: str | None
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    runner = Runner(MemoryStore(), "wf", run_id=run_id, bus=bus)
    target = Execution("wf", run_id if bridge_run_id else None)
    guard = EchoGuard()
    async with bus.subscribe("step") as local:
        async with (
            bridge(swf, bus, target, echo_guard=guard) as b,
            listener(swf, bus, "wf", poll_interval=3600, echo_guard=guard) as li,
        ):
            answered = swf_answered(b)
            await runner.step("a", lambda: 1, emit_signal=True)
            with anyio.fail_after(5):  # the bridge sends in the background
                await answered.wait()
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
    async with bridge(swf, bus, Execution("wf", run_id), echo_guard=guard):
        for i in range(10):
            await bus.publish(f"step.s{i}", i)
    assert len(await swf.signals("wf", run_id)) == 10
    assert guard.remembered == 0


async def test_without_a_shared_guard_the_listener_publishes_what_the_bridge_sent(
    swf: SwfWorld,
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    async with bus.subscribe("step") as local:
        async with (
            bridge(swf, bus, Execution("wf", run_id)) as b,
            listener(swf, bus, "wf", poll_interval=3600) as li,
        ):
            answered = swf_answered(b)
            await bus.publish("step.a", 1)
            with anyio.fail_after(5):  # the bridge sends in the background
                await answered.wait()
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
        return bridge(swf, EventBus(), Execution("wf", run_id), **kw)
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
        with pytest.raises(RuntimeError, match=f"this {name} is already open"):
            await resource.__aenter__()
    await resource.aclose()  # closing again does nothing
    with pytest.raises(RuntimeError, match=f"this {name} is closed and cannot be reopened"):
        await resource.__aenter__()


async def test_sending_or_polling_needs_an_open_resource(swf: SwfWorld) -> None:
    run_id = await swf.start("wf")
    with pytest.raises(RuntimeError, match="SwfSignalBridge is not open"):
        await bridge(swf, EventBus(), Execution("wf", run_id)).send("step.a")
    with pytest.raises(RuntimeError, match="SwfSignalListener is not open"):
        await listener(swf, EventBus(), "wf").poll_once()


def send_started(b: SwfSignalBridge) -> anyio.Event:
    """Set when the bridge's next signal leaves for SWF (botocore's own
    ``before-send`` hook)."""
    started = anyio.Event()
    b.client.meta.events.register(
        "before-send.swf.SignalWorkflowExecution", lambda **_: started.set()
    )
    return started


async def test_a_send_the_drain_cut_off_is_forgotten_so_a_genuine_signal_is_published(
    swf: SwfWorld, flaky: Any
) -> None:
    run_id = await swf.start("wf")
    bus = EventBus()
    guard = EchoGuard()
    async with bus.subscribe("step") as local:
        async with listener(swf, bus, "wf", poll_interval=3600, echo_guard=guard) as li:
            # The bridge's send hangs (the proxy holds it, never reaching moto),
            # so the drain timeout cuts it off.
            flaky.hold_next(1, "SimpleWorkflowService.SignalWorkflowExecution")
            with pytest.raises(SignalDeliveryError, match="may have reached SWF"):
                async with SwfSignalBridge(
                    bus,
                    domain=swf.domain,
                    executions=Execution("wf", run_id),
                    endpoint_url=flaky.endpoint_url,
                    echo_guard=guard,
                    drain_timeout=0.05,
                ) as b:
                    started = send_started(b)
                    await bus.publish("step.a", 1)
                    with anyio.fail_after(10):
                        await started.wait()
            assert guard.remembered == 0
            # The same signal, sent by someone else, is a new one: it is published.
            await swf.client.signal_workflow_execution(
                domain=swf.domain, workflowId="wf", signalName="step.a", input="1"
            )
            await li.poll_once()
        signals = local.receive_nowait_all()
    assert [(s.name, s.source) for s in signals] == [("step.a", None), ("step.a", li.source)]
