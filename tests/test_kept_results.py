"""Results that survive a skip, and steps that rerun when their version changes.

A step with ``keep_result`` writes its result in its done marker's body (one
write); when it is later skipped because it is done, the runner reads that one
body and returns the result. Run on every store asteps ships, on asyncio and on
trio (S3 on asyncio alone: aioboto3 runs on asyncio only).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from asteps import (
    FileStore,
    MemoryStore,
    Runner,
    S3Store,
    Step,
    StepOutcome,
)
from asteps._decision import ALREADY_PLAYED
from asteps._json import MAX_BODY_BYTES, MAX_DEPTH, MAX_RESULT_BYTES, depth
from asteps.errors import MarkerBodyError, MarkersNotReadable, ResultNotKept
from asteps.stores.base import parse_body

from .conftest import ASYNCIO_ONLY, each_store_on_each_backend


class Export(BaseModel):
    rows: int
    path: str
    at: dt.datetime


@dataclass
class Point:
    x: int
    y: int


EXPORT = Export(rows=1200, path="s3://exports/42.csv", at=dt.datetime(2026, 11, 27, 10, 0))


pytestmark = pytest.mark.anyio


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    each_store_on_each_backend(metafunc, "store")
    each_store_on_each_backend(metafunc, "raw_store", ("file", "s3"))


@pytest.fixture
async def store(
    request: pytest.FixtureRequest, store_kind: str, tmp_path: Path
) -> AsyncIterator[Any]:
    if store_kind == "memory":
        yield MemoryStore()
    elif store_kind == "file":
        yield FileStore(tmp_path / "store")
    else:
        aws = request.getfixturevalue("aws")  # a clean moto server
        async with S3Store("steps", endpoint_url=aws.endpoint_url, session=aws.session()) as s3:
            await s3.client.create_bucket(Bucket="steps")
            yield s3


async def submitted_in_turn(*steps: Callable[[], Awaitable[StepOutcome]]) -> list[StepOutcome]:
    """The outcomes of steps run together, each submitted once those before it
    wait (as gather would: trio starts the tasks of a group in no set order)."""
    outcomes: dict[int, StepOutcome] = {}

    async def run(i: int) -> None:
        outcomes[i] = await steps[i]()

    async with anyio.create_task_group() as tg:
        for i in range(len(steps)):
            tg.start_soon(run, i)
            await anyio.wait_all_tasks_blocked()
    return [outcomes[i] for i in range(len(steps))]


def counting(result: Any) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def activity() -> Any:
        calls.append(1)
        return result

    return calls, activity


async def test_a_typed_result_comes_back_on_the_next_run_equal_and_of_its_type(store: Any) -> None:
    calls, export = counting(EXPORT)
    first = await Runner(store, "wf").step("export", export, keep_result=Export)
    second = await Runner(store, "wf").step("export", export, keep_result=Export)

    assert calls == [1]
    assert first.result == EXPORT
    assert second.status == "skipped"
    assert isinstance(second.result, Export)
    assert second.result == EXPORT
    assert list(second.reasons) == [ALREADY_PLAYED, "result kept"]


async def test_the_result_is_in_the_marker_body_beside_simpleflows_keys(store: Any) -> None:
    runner = Runner(store, "wf", run_id="r1", version="3")
    await runner.step("p", lambda: Point(1, 2), keep_result=Point)
    body = await store.read_marker("wf/steps/", "p")
    assert body == {"run_id": "r1", "workflow_id": "wf", "version": "3", "result": {"x": 1, "y": 2}}


async def test_keep_result_true_returns_the_json_data(store: Any) -> None:
    await Runner(store, "wf").step("a", lambda: {"when": dt.date(2026, 1, 2)}, keep_result=True)
    again = await Runner(store, "wf").step("a", lambda: None, keep_result=True)
    assert again.result == {"when": "2026-01-02"}


async def test_a_second_step_uses_the_first_ones_result_on_every_run(store: Any) -> None:
    async def flow(runner: Runner) -> StepOutcome:
        fetched = await runner.step("fetch", lambda: [3, 1, 2], keep_result=list[int])
        return await runner.step("sum", (lambda xs: sum(xs), fetched.result))

    assert (await flow(Runner(store, "wf"))).result == 6
    await store.unmark("wf/steps/", ["sum"])
    assert (await flow(Runner(store, "wf"))).result == 6


async def test_a_forced_step_recomputes_and_rewrites_its_result(store: Any) -> None:
    await Runner(store, "wf").step("n", lambda: 1, keep_result=int)
    forced = await Runner(store, "wf").step("n", lambda: 2, keep_result=int, force=True)
    again = await Runner(store, "wf").step("n", lambda: 3, keep_result=int)
    assert (forced.status, forced.result) == ("completed", 2)
    assert (again.status, again.result) == ("skipped", 2)


async def test_a_marker_without_a_result_runs_the_step_again_with_a_reason(store: Any) -> None:
    await Runner(store, "wf").step("n", lambda: 1)  # keeps nothing
    outcome = await Runner(store, "wf").step("n", lambda: 5, keep_result=int)
    assert (outcome.status, outcome.forced, list(outcome.reasons)) == (
        "completed",
        True,
        ["result missing"],
    )
    assert (await store.read_marker("wf/steps/", "n"))["result"] == 5


async def test_a_result_that_fails_validation_runs_the_step_again(store: Any) -> None:
    await Runner(store, "wf").step("n", lambda: "not a number", keep_result=True)
    outcome = await Runner(store, "wf").step("n", lambda: 7, keep_result=int)
    assert outcome.status == "completed"
    assert outcome.reasons[0].startswith("result invalid: ")


async def test_on_missing_result_none_skips_with_no_result(store: Any) -> None:
    await Runner(store, "wf").step("n", lambda: 1)
    outcome = await Runner(store, "wf").step(
        "n", lambda: 5, keep_result=int, on_missing_result="none"
    )
    assert (outcome.status, outcome.result) == ("skipped", None)
    assert list(outcome.reasons) == [ALREADY_PLAYED, "result missing"]


async def test_on_missing_result_none_with_an_alternative_returns_the_alternatives_result(
    store: Any,
) -> None:
    # Nothing could be kept, so the step returns what any skip with an
    # alternative returns (the kept-results guide's table says so).
    await Runner(store, "wf").step("n", lambda: 1)
    outcome = await Runner(store, "wf").step(
        "n",
        lambda: 5,
        keep_result=int,
        on_missing_result="none",
        activities_if_step_already_done=lambda: "from the alternative",
    )
    assert (outcome.status, outcome.result) == ("skipped", "from the alternative")
    assert list(outcome.reasons) == [ALREADY_PLAYED, "result missing"]


async def test_a_kept_result_is_returned_even_when_it_is_none_and_the_step_has_an_alternative(
    store: Any,
) -> None:
    # A kept None was taken for "nothing kept", and the alternative's result
    # returned instead (docs/choices.md: a kept result is returned even when
    # the step also has an alternative, which still runs for its side effects).
    await Runner(store, "wf").step("a", lambda: None, keep_result=True)
    alternative_calls, alternative = counting("from the alternative")
    outcome = await Runner(store, "wf").step(
        "a", lambda: "ran", keep_result=True, activities_if_step_already_done=alternative
    )
    assert alternative_calls == [1]
    assert (outcome.status, outcome.result) == ("skipped", None)
    assert list(outcome.reasons) == [ALREADY_PLAYED, "result kept"]


async def test_a_step_skipped_by_a_pattern_returns_its_alternatives_result(store: Any) -> None:
    # No body is read for it: nothing kept, so the alternative's result stands.
    await Runner(store, "wf").step("a", lambda: 1, keep_result=int)
    runner = Runner(store, "wf")
    runner.add_skipped_steps("a", "not today")
    outcome = await runner.step(
        "a", lambda: 2, keep_result=int, activities_if_step_already_done=lambda: 3
    )
    assert (outcome.status, outcome.result) == ("skipped", 3)


async def test_on_missing_result_error_fails_the_step_clearly(store: Any) -> None:
    await Runner(store, "wf").step("n", lambda: 1)
    outcome = await Runner(store, "wf").step(
        "n", lambda: 5, keep_result=int, on_missing_result="error"
    )
    assert outcome.status == "failed"
    assert "is done but result missing" in str(outcome.error)


async def test_an_oversize_result_is_refused_and_the_step_not_marked(store: Any) -> None:
    runner = Runner(store, "wf", max_result_bytes=1000)
    with pytest.raises(ResultNotKept, match=r"over max_result_bytes=1,000.*reference") as raised:
        await runner.step("big", lambda: "x" * 2000, keep_result=True)
    assert raised.value.result == "x" * 2000
    assert runner.outcomes[-1].status == "failed"
    assert runner.outcomes[-1].result == "x" * 2000
    assert await store.list_done("wf/steps/") == set()


async def test_a_result_that_is_not_json_is_refused_and_the_step_not_marked(store: Any) -> None:
    with pytest.raises(ResultNotKept, match="cannot be written as JSON"):
        await Runner(store, "wf").step("obj", lambda: object(), keep_result=True)
    assert await store.list_done("wf/steps/") == set()


async def test_a_new_version_reruns_a_done_step_with_the_versions_as_reason(store: Any) -> None:
    calls, work = counting(None)
    await Runner(store, "wf", version="1").step("a", work, rerun_on_new_version=True)
    same = await Runner(store, "wf", version="1").step("a", work, rerun_on_new_version=True)
    new = await Runner(store, "wf", version="2").step("a", work, rerun_on_new_version=True)
    after = await Runner(store, "wf", version="2").step("a", work, rerun_on_new_version=True)
    assert calls == [1, 1]
    assert same.status == "skipped"
    assert (new.status, new.forced, list(new.reasons)) == ("completed", True, ["version 1 -> 2"])
    assert after.status == "skipped"


async def test_a_rerun_on_a_new_version_forces_the_steps_dependents(store: Any) -> None:
    await Runner(store, "wf", version="1").step("a", lambda: None)
    await Runner(store, "wf", version="1").step("b", lambda: None)
    runner = Runner(store, "wf", version="2")
    await runner.step("a", lambda: None, rerun_on_new_version=True, force_steps_if_executed=["b"])
    b = await runner.step("b", lambda: None)
    assert (b.status, list(b.reasons)) == ("completed", ["Dep of a"])


async def test_a_dry_run_reads_the_bodies_and_says_why(store: Any) -> None:
    await Runner(store, "wf").step("kept", lambda: 1, keep_result=int)
    await Runner(store, "wf").step("bare", lambda: 1)
    plan = Runner(store, "wf", dry_run=True)
    kept = await plan.step("kept", lambda: 1, keep_result=int)
    missing = await plan.step("bare", lambda: 1, keep_result=int)
    assert (kept.decision, list(kept.reasons), kept.result) == (
        "skip",
        [ALREADY_PLAYED, "result kept"],
        None,
    )
    assert (missing.decision, list(missing.reasons)) == ("run", ["result missing"])


async def test_a_step_model_keeps_its_result_too(store: Any) -> None:
    await Runner(store, "wf").submit(Step("s", lambda: 4, keep_result=int))
    again = await Runner(store, "wf").submit(Step("s", lambda: 0, keep_result=int))
    assert again.result == 4


async def test_keep_result_must_be_true_or_a_type() -> None:
    with pytest.raises(TypeError, match="keep_result must be True or a type"):
        await Runner(MemoryStore(), "wf").step("s", lambda: 1, keep_result=object())


class ListOnlyStore:
    """A user's own store with the three methods of the protocol, and no read_marker."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    async def list_done(self, prefix: str) -> set[str]:
        return await self.inner.list_done(prefix)

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        await self.inner.mark_done(prefix, name, body)

    async def unmark(self, prefix: str, names: Any) -> None:
        await self.inner.unmark(prefix, names)


async def test_a_store_without_read_marker_works_for_steps_that_keep_nothing() -> None:
    store = ListOnlyStore()
    await Runner(store, "wf").step("a", lambda: 1)
    assert (await Runner(store, "wf").step("a", lambda: 1)).status == "skipped"


@pytest.mark.parametrize(
    "option", [{"keep_result": int}, {"rerun_on_new_version": True}], ids=lambda o: next(iter(o))
)
async def test_a_step_that_needs_bodies_is_refused_on_such_a_store_before_it_runs(
    option: dict[str, Any],
) -> None:
    """On the first run too: not once the step has run and been marked, with
    a body that the next run could not read."""
    store = ListOnlyStore()
    ran: list[int] = []
    with pytest.raises(MarkersNotReadable, match=r"ListOnlyStore.*cannot read marker bodies"):
        await Runner(store, "wf", version="1").step("k", lambda: ran.append(1), **option)
    assert ran == []
    assert await store.list_done("wf/steps/") == set()


async def test_a_corrupt_body_on_the_file_store_runs_the_step_again(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await Runner(store, "wf").step("a", lambda: 1, keep_result=int)
    (tmp_path / "wf" / "steps" / "a").write_text("{not json")
    outcome = await Runner(store, "wf").step("a", lambda: 2, keep_result=int)
    assert outcome.status == "completed"
    assert outcome.reasons[0].startswith("result invalid")
    assert json.loads((tmp_path / "wf" / "steps" / "a").read_text())["result"] == 2


# -- on S3 (moto over HTTP): simpleflow's markers, and the request budget -------


@ASYNCIO_ONLY
async def test_a_marker_written_by_simpleflow_has_no_result_so_the_step_runs_again(
    s3: Any, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio.to_thread
    from simpleflow.step.tasks import MarkStepDoneTask

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.endpoint_url)
    await anyio.to_thread.run_sync(MarkStepDoneTask("steps", "wf/steps", "export").execute)
    outcome = await Runner(s3, "wf").step("export", lambda: EXPORT, keep_result=Export)
    assert (outcome.status, list(outcome.reasons)) == ("completed", ["result missing"])
    again = await Runner(s3, "wf").step("export", lambda: None, keep_result=Export)
    assert again.result == EXPORT


@ASYNCIO_ONLY
async def test_a_rerun_reads_only_the_bodies_of_the_steps_that_keep_results(s3: Any) -> None:
    async def flow(runner: Runner) -> None:
        for i in range(10):
            keep = int if i < 3 else False
            await runner.step(f"s{i}", lambda i=i: i, keep_result=keep)

    await flow(Runner(s3, "wf"))
    s3.counter.clear()
    await flow(Runner(s3, "wf"))
    assert dict(s3.counter.calls) == {"ListObjectsV2": 1, "GetObject": 3}


@ASYNCIO_ONLY
async def test_kept_results_of_concurrent_steps_are_read_concurrently(s3: Any) -> None:
    for i in range(5):
        await Runner(s3, "wf").step(f"k{i}", lambda i=i: i, keep_result=int)
    runner = Runner(s3, "wf")
    results: dict[str, Any] = {}

    async def one(i: int) -> None:
        results[f"k{i}"] = (await runner.step(f"k{i}", lambda: -1, keep_result=int)).result

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert results == {f"k{i}": i for i in range(5)}


async def test_a_step_rerun_on_a_new_version_forces_a_dependent_submitted_with_it(
    store: Any,
) -> None:
    await Runner(store, "wf", version="1").step("a", lambda: None)
    await Runner(store, "wf", version="1").step("b", lambda: None)
    runner = Runner(store, "wf", version="2")
    a, b = await submitted_in_turn(
        lambda: runner.step(
            "a", lambda: 1, rerun_on_new_version=True, force_steps_if_executed=["b"]
        ),
        lambda: runner.step("b", lambda: 2),
    )
    assert (a.status, list(a.reasons)) == ("completed", ["version 1 -> 2"])
    assert (b.status, list(b.reasons)) == ("completed", ["Dep of a"])


async def test_a_missing_result_forces_a_dependent_submitted_with_it(store: Any) -> None:
    await Runner(store, "wf").step("a", lambda: 1)  # kept nothing
    await Runner(store, "wf").step("b", lambda: None)
    runner = Runner(store, "wf")
    a, b = await submitted_in_turn(
        lambda: runner.step("a", lambda: 1, keep_result=int, force_steps_if_executed=["b"]),
        lambda: runner.step("b", lambda: 2),
    )
    assert (a.status, b.status, list(b.reasons)) == ("completed", "completed", ["Dep of a"])


@pytest.mark.parametrize("bad", ["100", 0, -1, 1.5, True])
def test_max_result_bytes_must_be_a_positive_int_before_anything_runs(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_result_bytes must be a positive int"):
        Runner(MemoryStore(), "wf", max_result_bytes=bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"x": [1.0, float("-inf")]}])
async def test_a_result_with_nan_or_infinity_is_refused_not_stored_as_null(
    store: Any, value: Any
) -> None:
    with pytest.raises(ResultNotKept, match="NaN or infinity"):
        await Runner(store, "wf").step("f", lambda: value, keep_result=True)
    assert await store.list_done("wf/steps/") == set()


async def test_with_the_done_list_known_a_step_waits_for_one_reading_its_body_first(
    store: Any,
) -> None:
    # The done list is known, so "b" has nothing to wait for but "a", which
    # reads its body before deciding whether its dependents are forced.
    await Runner(store, "wf", version="1").step("a", lambda: None)
    await Runner(store, "wf", version="1").step("b", lambda: None)
    runner = Runner(store, "wf", version="2", done=["a", "b"])
    a, b = await submitted_in_turn(
        lambda: runner.step(
            "a", lambda: 1, rerun_on_new_version=True, force_steps_if_executed=["b"]
        ),
        lambda: runner.step("b", lambda: 2),
    )
    assert (a.status, list(a.reasons)) == ("completed", ["version 1 -> 2"])
    assert (b.status, list(b.reasons)) == ("completed", ["Dep of a"])


# -- bodies and results from outside: bounded, typed (issue 6, 7, 8) ------------


async def _write_body(store: Any, name: str, raw: bytes) -> None:
    """Put ``raw`` as the body of marker ``wf/steps/<name>``, as another writer would."""
    if isinstance(store, FileStore):
        path = store.root / "wf" / "steps" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    else:
        await store.client.put_object(Bucket="steps", Key=f"wf/steps/{name}", Body=raw)


@pytest.fixture
async def raw_store(
    request: pytest.FixtureRequest, raw_store_kind: str, tmp_path: Path
) -> AsyncIterator[Any]:
    """A store whose bodies are bytes another writer may have put there."""
    if raw_store_kind == "file":
        yield FileStore(tmp_path / "store")
    else:
        aws = request.getfixturevalue("aws")
        async with S3Store("steps", endpoint_url=aws.endpoint_url, session=aws.session()) as s3:
            await s3.client.create_bucket(Bucket="steps")
            yield s3


DEEP = b'{"result": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(
    ("on_missing", "status"), [("run", "completed"), ("none", "skipped"), ("error", "failed")]
)
async def test_a_deeply_nested_body_is_an_invalid_result_that_on_missing_result_decides(
    raw_store: Any, on_missing: str, status: str
) -> None:
    await _write_body(raw_store, "n", DEEP)
    outcome = await Runner(raw_store, "wf").step(
        "n", lambda: 5, keep_result=int, on_missing_result=on_missing
    )
    assert outcome.status == status
    problem = next(r for r in outcome.reasons if r.startswith("result invalid"))
    assert f"over {MAX_DEPTH}" in problem
    assert len(problem) < 300


async def test_a_deeply_nested_body_reruns_a_step_on_a_new_version(raw_store: Any) -> None:
    await _write_body(raw_store, "n", DEEP)
    outcome = await Runner(raw_store, "wf", version="2").step(
        "n", lambda: None, rerun_on_new_version=True
    )
    assert outcome.status == "completed"
    [reason] = outcome.reasons  # its version is unknown: not "version None -> 2"
    assert reason.startswith("version unreadable -> 2: marker ")
    assert reason.endswith(f"is refused: it nests 100,001 levels deep, over {MAX_DEPTH}")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"[" * 100_000, f"over {MAX_DEPTH}"),
        (b" " * (MAX_BODY_BYTES + 1), f"over {MAX_BODY_BYTES:,} bytes"),
        (b"[1, 2]", "holds a list"),
        (b'"a string"', "holds a str"),
        (b"\xff{}", "not JSON"),
        (b"{", "not JSON"),
        # Python's json reads these; they are not JSON, and asteps never writes one.
        (b'{"result": NaN}', "NaN is not a JSON value"),
        (b'{"result": [1, -Infinity]}', "-Infinity is not a JSON value"),
    ],
)
def test_a_body_that_cannot_be_decoded_is_one_marker_body_error(raw: bytes, says: str) -> None:
    with pytest.raises(MarkerBodyError, match=says):
        parse_body(raw, "wf/steps/n")


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    body = {"result": "[" * 1000, "version": '\\"[[[['}
    assert parse_body(json.dumps(body), "here") == body


@pytest.mark.parametrize(
    "hostile",
    [
        b'"' + b'\\"' * 2_000_000,  # a string never closed, of escaped quotes
        b'"' + b'\\"' * 2_000_000 + b"\\",  # the same, ending on a lone backslash
        b'{"a": "' + b'\\"[' * 1_000_000,
    ],
    ids=["unclosed", "trailing-backslash", "brackets-after"],
)
def test_the_depth_of_a_hostile_body_is_found_in_one_pass(hostile: bytes) -> None:
    """A body of one string never closed, full of escaped quotes, made the
    depth check scan to the end from every quote: quadratic, days at the
    size bound. It takes one pass: checked in a child process, its timeout a
    hang guard (one pass over these 4 MB takes milliseconds; the quadratic
    scan, hours)."""
    check = "import sys; from asteps._json import depth; print(depth(sys.stdin.buffer.read()))"
    done = subprocess.run(
        [sys.executable, "-c", check], input=hostile, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) <= 1  # what an unclosed string holds does not count


def test_an_unclosed_string_still_hides_its_brackets_and_the_depth_before_it_counts() -> None:
    assert depth(b'[[{"a": "[[[[') == 3
    assert depth(b'[[{"a": "x"}, [[') == 4


async def test_a_file_body_is_read_no_further_than_the_bound(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await _write_body(store, "n", b'{"result": 1}' + b" " * (2 * MAX_BODY_BYTES))
    with pytest.raises(MarkerBodyError, match="bytes"):
        await store.read_marker("wf/steps/", "n")


@pytest.mark.parametrize(
    ("result", "keep", "says"),
    [
        ("abc", int, "not of the type keep_result declares \\(int\\)"),
        ({"rows": "many"}, Export, "rows"),
        ([1, "x"], list[int], "1: Input should be a valid integer"),
    ],
)
async def test_a_result_not_of_the_declared_type_is_refused_and_the_step_not_marked(
    store: Any, result: Any, keep: Any, says: str
) -> None:
    with pytest.raises(ResultNotKept, match=says) as raised:
        await Runner(store, "wf").step("n", lambda: result, keep_result=keep)
    assert raised.value.result == result
    assert await store.list_done("wf/steps/") == set()


async def test_a_result_that_validates_is_written_as_its_type(store: Any) -> None:
    await Runner(store, "wf").step("n", lambda: (1, "2"), keep_result=list[int])
    assert (await store.read_marker("wf/steps/", "n"))["result"] == [1, 2]
    again = await Runner(store, "wf").step("n", lambda: [0], keep_result=list[int])
    assert (again.status, again.result) == ("skipped", [1, 2])


async def test_a_result_nested_deeper_than_a_body_may_be_is_refused(store: Any) -> None:
    deep: list[Any] = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ResultNotKept, match="flatten it"):
        await Runner(store, "wf").step("n", lambda: deep, keep_result=True)
    assert await store.list_done("wf/steps/") == set()


@pytest.mark.parametrize("keep", ["yes", "int", 1, 2.5, list["Nope"]])  # type: ignore[name-defined]  # noqa: F821
async def test_keep_result_that_is_not_a_type_is_a_type_error(keep: Any) -> None:
    with pytest.raises(TypeError, match="keep_result must be True or a type"):
        await Runner(MemoryStore(), "wf").step("s", lambda: 1, keep_result=keep)


def test_max_result_bytes_is_at_most_what_a_body_may_hold() -> None:
    Runner(MemoryStore(), "wf", max_result_bytes=MAX_RESULT_BYTES)
    with pytest.raises(ValueError, match="at most"):
        Runner(MemoryStore(), "wf", max_result_bytes=MAX_RESULT_BYTES + 1)


async def test_keep_result_1_is_not_true_even_after_true_was_used() -> None:
    # The adapters are built once per type: 1 == True must not find True's.
    runner = Runner(MemoryStore(), "wf")
    await runner.step("a", lambda: 1, keep_result=True)
    with pytest.raises(TypeError, match="keep_result must be True or a type"):
        await runner.step("b", lambda: 1, keep_result=1)
