"""Bad input to the public constructors and methods: a clear error that says
what to fix, raised before anything is written.

One table, one row per mistake: what is called, the exception expected, and a
fragment of its message (the part that names the mistake or the fix).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from asteps import (
    Chain,
    EventBus,
    Group,
    InvalidStepName,
    MemoryStore,
    Runner,
    SignalError,
    Step,
)
from asteps.swf import Execution, SwfSignalBridge

LONG_ID = "x" * 256

# (label, call(store), exception, fragment of the message)
CASES: list[tuple[str, Callable[[MemoryStore], Any], type[Exception], str]] = [
    # workflow ids
    ("empty id", lambda s: Runner(s, ""), InvalidStepName, "non-empty"),
    ("id with '/'", lambda s: Runner(s, "a/b"), InvalidStepName, "'/'"),
    ("id '..'", lambda s: Runner(s, ".."), InvalidStepName, "path component"),
    ("id with C0 control", lambda s: Runner(s, "a\x1b[31m"), InvalidStepName, "U+001B"),
    ("id with C1 control", lambda s: Runner(s, "a\u0085"), InvalidStepName, "U+0085"),
    ("id with CSI", lambda s: Runner(s, "a\u009b"), InvalidStepName, "U+009B"),
    ("id with line sep", lambda s: Runner(s, "a\u2028"), InvalidStepName, "U+2028"),
    ("id with para sep", lambda s: Runner(s, "a\u2029"), InvalidStepName, "U+2029"),
    ("id with zero width", lambda s: Runner(s, "a\u200b"), InvalidStepName, "U+200B"),
    ("id with RTL override", lambda s: Runner(s, "a\u202e"), InvalidStepName, "U+202E"),
    ("id with surrogate", lambda s: Runner(s, "a\udcff"), InvalidStepName, "U+DCFF"),
    ("id of 256 bytes", lambda s: Runner(s, LONG_ID), InvalidStepName, "limit is 255"),
    ("id not a string", lambda s: Runner(s, 42), InvalidStepName, "non-empty string"),
    # the store
    ("store URL", lambda s: Runner("file:.asteps", "wf"), TypeError, "asteps.open_store"),
    ("store class", lambda s: Runner(MemoryStore, "wf"), TypeError, "got the class"),
    ("store None", lambda s: Runner(None, "wf"), TypeError, "MemoryStore, FileStore"),
    # prefix templates
    (
        "prefix with unknown key",
        lambda s: Runner(s, "wf", prefix="{tenant}/{workflow_id}/"),
        InvalidStepName,
        "pass context=",
    ),
    ("absolute prefix", lambda s: Runner(s, "wf", prefix="/x/"), InvalidStepName, "relative"),
    ("prefix with '..'", lambda s: Runner(s, "wf", prefix="../x/"), InvalidStepName, "'..'"),
    ("malformed prefix", lambda s: Runner(s, "wf", prefix="{"), InvalidStepName, "malformed"),
    # step names and patterns
    ("step name '*'", lambda s: Step("*", print), InvalidStepName, "is a pattern"),
    ("step name with space", lambda s: Step("a b", print), InvalidStepName, "' '"),
    ("step name too long", lambda s: Step("x" * 201, print), InvalidStepName, "limit is 200"),
    ("empty segment", lambda s: Step("a..b", print), InvalidStepName, "stray '.'"),
    (
        "bad dependent pattern",
        lambda s: Step("a", print, force_steps_if_executed=["b c"]),
        InvalidStepName,
        "pattern",
    ),
    (
        "bad forced pattern",
        lambda s: Runner(s, "wf").add_forced_steps(["ok", "a.*"]),
        InvalidStepName,
        "pattern may also be '*'",
    ),
    (
        "bad skipped pattern",
        lambda s: Runner(s, "wf").add_skipped_steps("é"),
        InvalidStepName,
        "'é'",
    ),
    # composition
    ("chain member", lambda s: Chain(print, 42), TypeError, "not an activity"),
    ("group bound", lambda s: Group(print, max_parallel=0), ValueError, "positive int"),
    ("group bound a bool", lambda s: Group(print, max_parallel=True), ValueError, "positive int"),
    # the bus
    ("bus buffer", lambda s: EventBus(buffer=0), ValueError, "at least 1"),
    ("bus buffer not an int", lambda s: EventBus(buffer=1.5), ValueError, "an int"),
    # checked when built, before any request to SWF (it was checked when entered)
    (
        "bridge buffer",
        lambda s: SwfSignalBridge(EventBus(), domain="d", executions=Execution("w"), buffer=0),
        ValueError,
        "at least 1",
    ),
    # "blok" meant "drop_oldest": a typo for "block" dropped signals silently.
    ("bus overflow", lambda s: EventBus(overflow="blok"), ValueError, "'drop_oldest' or 'block'"),
]


@pytest.mark.parametrize(
    ("call", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_a_message_before_anything_is_written(
    call: Callable[[MemoryStore], Any], error: type[Exception], fragment: str
) -> None:
    store = MemoryStore()
    with pytest.raises(error) as raised:
        call(store)
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)  # one line
    assert store.objects == {}


ASYNC_CASES: list[tuple[str, Callable[[Runner], Any], type[Exception], str]] = [
    ("step name", lambda r: r.step("a b", print), InvalidStepName, "' '"),
    ("step name '*'", lambda r: r.step("*", print), InvalidStepName, "is a pattern"),
    (
        "dependent pattern",
        lambda r: r.step("a", print, force_steps_if_executed=["*.x"]),
        InvalidStepName,
        "pattern",
    ),
    ("signal name", lambda r: r.bus.publish(""), SignalError, "non-empty string"),
    ("long signal name", lambda r: r.bus.publish("s" * 257), SignalError, "at most 256"),
    ("bus pattern", lambda r: subscribed(r.bus, "a b"), InvalidStepName, "' '"),
    ("no pattern", lambda r: subscribed(r.bus, []), SignalError, "at least one pattern"),
]


async def subscribed(bus: EventBus, pattern: str | list[str]) -> None:
    async with bus.subscribe(pattern):
        pass


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [c[1:] for c in ASYNC_CASES],
    ids=[c[0] for c in ASYNC_CASES],
)
async def test_bad_input_to_a_runner_fails_before_listing_or_writing(
    call: Callable[[Runner], Any], error: type[Exception], fragment: str
) -> None:
    class NoIO(MemoryStore):
        async def list_done(self, prefix: str) -> set[str]:
            raise AssertionError("listed before checking its input")

    store = NoIO()
    runner = Runner(store, "wf")
    with pytest.raises(error, match=fragment.replace("*", r"\*")):
        await call(runner)
    assert store.objects == {}
    assert runner.outcomes == []
