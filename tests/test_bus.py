"""The event bus: hierarchical subscriptions, bounded buffers, waiting. On asyncio
and on trio."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

from asteps import EventBus, Signal, SignalError, SignalTimeout

pytestmark = pytest.mark.anyio


async def test_each_test_here_runs_on_the_backend_it_is_named_for(anyio_backend: str) -> None:
    # pytest-asyncio's auto mode would run test_x[trio] on asyncio (conftest.py)
    assert sniffio.current_async_library() == anyio_backend


async def test_subscribers_receive_what_their_pattern_covers() -> None:
    bus = EventBus()
    async with bus.subscribe("step") as steps, bus.subscribe("*") as everything:
        await bus.publish("step.a.b", {"x": 1})
        await bus.publish("stepper", 2)
        await bus.publish("log.step")
        assert await steps.receive(timeout=1) == Signal("step.a.b", {"x": 1})
        assert steps.pending() == 0
        assert [s.name for s in (everything.receive_nowait_all())] == [
            "step.a.b",
            "stepper",
            "log.step",
        ]


async def test_a_slow_subscriber_never_blocks_the_publisher_and_drops_are_counted() -> None:
    bus = EventBus(buffer=3)
    async with bus.subscribe("s") as sub:
        for i in range(10):
            await bus.publish("s", i)
        assert sub.dropped == 7
        assert [s.payload for s in sub.receive_nowait_all()] == [7, 8, 9]


async def test_a_blocking_subscription_makes_the_publisher_wait_for_room() -> None:
    bus = EventBus()
    got: list[int] = []
    async with bus.subscribe("s", buffer=1, overflow="block") as sub:
        async with anyio.create_task_group() as tg:

            async def publish_all() -> None:
                for i in range(5):
                    await bus.publish("s", i)

            tg.start_soon(publish_all)
            for _ in range(5):
                got.append((await sub.receive(timeout=1)).payload)
    assert got == [0, 1, 2, 3, 4]
    assert sub.dropped == 0


async def test_wait_returns_the_next_signal_of_that_exact_name() -> None:
    bus = EventBus()
    async with anyio.create_task_group() as tg:
        result: list[Signal] = []

        async def waiter() -> None:
            result.append(await bus.wait("step.a", timeout=1))

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()  # the waiter waits
        await bus.publish("step.a.b", "child, not it")
        await bus.publish("step.a", "it")
    assert result == [Signal("step.a", "it")]


async def test_wait_times_out_with_a_clear_error() -> None:
    with pytest.raises(SignalTimeout, match="'never'"):
        await EventBus().wait("never", timeout=0.01)


@pytest.mark.parametrize("name", ["", "x" * 257], ids=["empty", "257-chars"])
async def test_waiting_for_a_name_no_signal_can_have_is_refused_not_endless(name: str) -> None:
    """publish refuses such a name, so a wait for it could never end."""
    with anyio.fail_after(10), pytest.raises(SignalError, match="signal name"):  # 10: a hang
        await EventBus().wait(name)


async def test_wait_may_include_a_signal_already_published() -> None:
    bus = EventBus()
    await bus.publish("ready", 1)
    assert (await bus.wait("ready", timeout=1, include_past=True)).payload == 1
    with pytest.raises(SignalTimeout):
        await bus.wait("ready", timeout=0.01)


async def _next_signal_of(bus: EventBus, name: str, payload: str) -> Signal:
    """What ``wait(name, include_past=True)`` returns when ``payload`` is
    published under ``name`` once the waiter waits."""
    got: list[Signal] = []

    async def waiter() -> None:
        got.append(await bus.wait(name, include_past=True))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        while not bus.listening(name) and not got:
            await anyio.lowlevel.checkpoint()
        if not got:
            await bus.publish(name, payload)
    return got[0]


async def test_the_bus_remembers_the_last_signal_of_a_bounded_number_of_names() -> None:
    bus = EventBus(remember=2)
    await bus.publish("a", "old a")
    await bus.publish("b", "old b")
    assert (await bus.wait("a", include_past=True)).payload == "old a"  # a: used last
    await bus.publish("c", "c")  # b, the least recently used, is forgotten
    assert (await _next_signal_of(bus, "c", "new c")).payload == "c"
    assert (await _next_signal_of(bus, "a", "new a")).payload == "old a"
    assert (await _next_signal_of(bus, "b", "new b")).payload == "new b"


async def test_a_bus_of_many_names_keeps_only_as_many_as_it_remembers() -> None:
    bus = EventBus(remember=3)
    for i in range(1000):
        await bus.publish(f"name.{i}", "x" * 1000)
    assert len(bus._last) == 3


@pytest.mark.parametrize("remember", [0, -1, True, 1.5])
def test_remember_must_be_a_positive_int(remember: Any) -> None:
    with pytest.raises(ValueError, match="remember must be a positive int"):
        EventBus(remember=remember)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"overflow": "blok"}, "'drop_oldest' or 'block'"),  # dropped signals silently
        ({"buffer": 0}, "at least 1"),  # taken for the bus's default
        ({"buffer": 1.5}, "buffer must be an int"),  # was anyio's error, from the stream
    ],
)
async def test_a_subscription_with_a_bad_overflow_or_buffer_is_refused(
    options: dict[str, Any], fragment: str
) -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match=fragment):
        async with bus.subscribe("x", **options):
            pass
    assert not bus.listening("x")


async def test_iterating_a_subscription_ends_when_it_closes() -> None:
    bus = EventBus()
    seen: list[str] = []
    async with bus.subscribe("x") as sub:
        await bus.publish("x.1")
        await bus.publish("x.2")
        async for signal in sub:
            seen.append(signal.name)
            if len(seen) == 2:
                break
    assert seen == ["x.1", "x.2"]
    assert not bus.listening("x.1")


@pytest.mark.parametrize("name", ["", "x" * 257])
async def test_bad_signal_names_are_refused(name: str) -> None:
    with pytest.raises(SignalError):
        await EventBus().publish(name)


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["log.step", "other"], ["log.step"]),
        (["step", "log.step"], ["step.a", "log.step"]),
        (["other", "step"], ["step.a"]),
    ],
)
async def test_a_subscription_with_several_patterns_is_listening_for_each(
    patterns: list[str], expected: list[str]
) -> None:
    bus = EventBus()
    async with bus.subscribe(patterns) as sub:
        assert bus.listening("log.step") is ("log.step" in expected)
        assert bus.listening("step.a") is ("step.a" in expected)
        await bus.publish("step.a")
        await bus.publish("log.step")
        assert [s.name for s in sub.receive_nowait_all()] == expected


async def test_markers_reach_a_subscription_whose_first_pattern_is_not_log_step() -> None:
    from asteps import MemoryStore, Runner

    runner = Runner(MemoryStore(), "wf")
    async with runner.bus.subscribe(["other", "log.step"]) as sub:
        await runner.step("a", lambda: None)
        statuses = [s.payload["status"] for s in sub.receive_nowait_all()]
    assert statuses == ["scheduled", "completed"]


async def test_a_subscriber_leaving_during_a_blocked_delivery_costs_the_others_nothing() -> None:
    bus = EventBus()
    leaving = bus.subscribe("x", buffer=1, overflow="block")
    await leaving.__aenter__()  # subscribed first: delivered to before b and c
    async with bus.subscribe("x") as b, bus.subscribe("x") as c:
        await bus.publish("x.1")  # fills its buffer: the next delivery to it blocks
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.publish, "x.2")
            await anyio.wait_all_tasks_blocked()
            await leaving.__aexit__(None, None, None)  # it leaves while x.2 waits for room
        assert [s.name for s in b.receive_nowait_all()] == ["x.1", "x.2"]
        assert [s.name for s in c.receive_nowait_all()] == ["x.1", "x.2"]


async def test_a_stopped_blocking_subscription_still_takes_the_publishers_waiting_for_room() -> (
    None
):
    bus = EventBus()
    async with bus.subscribe("x", buffer=1, overflow="block") as sub:
        await bus.publish("x.1")  # fills the buffer: the next publishers wait for room
        with anyio.fail_after(10):  # a hang guard
            async with anyio.create_task_group() as tg:
                tg.start_soon(bus.publish, "x.2")
                tg.start_soon(bus.publish, "x.3")
                await anyio.wait_all_tasks_blocked()
                sub.stop()  # published before the stop: theirs, not dropped
                await bus.publish("x.4")  # after it: not delivered
                # (two publishers at once: in either order)
                assert sorted([s.name async for s in sub]) == ["x.1", "x.2", "x.3"]


async def test_a_stopped_subscription_gets_nothing_new_and_drains_what_it_holds() -> None:
    bus = EventBus()
    async with bus.subscribe("step") as sub:
        await bus.publish("step.a")
        sub.stop()
        await bus.publish("step.b")
        assert not bus.listening("step.c")
        assert [s.name async for s in sub] == ["step.a"]


async def test_attach_and_detach_still_work_for_one_release_with_a_warning() -> None:
    bus = EventBus()
    with pytest.warns(DeprecationWarning, match="subscribe"):
        sub = bus.attach("x")
    await bus.publish("x.1")
    with pytest.warns(DeprecationWarning, match="stop"):
        bus.detach(sub)
    await bus.publish("x.2")
    assert [s.name for s in sub.receive_nowait_all()] == ["x.1"]
