"""`submit` and `asteps swf submit` against moto's SWF: what starts, what is
already running, what is refused, and what never reaches SWF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

import asteps._demo as asteps_demo
from asteps._flows import flow_names, load_flow
from asteps.errors import FlowError, InvalidStepName
from asteps.swf import FlowInput, FlowInputError, RetryPolicy, SwfNotSetUp, prepare, submit
from asteps.swf._activity import StoreAllowList, accept
from asteps.swf._submit import KEPT_IDS, RateLimiter, SubmitSummary, spelling_warning
from asteps.testing import MotoServer

from .conftest import FlakyProxy
from .swf_processes import DOMAIN, FLOW, FLOWS, asteps

PARAMS = {"log": "/dev/null"}


async def submit_to(aws: MotoServer, ids: list[str], **options: Any) -> Any:
    options.setdefault("endpoint_url", aws.endpoint_url)
    return await submit(
        prepare(FLOW, params=PARAMS), ids, domain=DOMAIN, session=aws.session(), **options
    )


async def open_inputs(aws: MotoServer) -> dict[str, str]:
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        page = await client.list_open_workflow_executions(
            domain=DOMAIN, startTimeFilter={"oldestDate": 0}
        )
        found = {}
        for info in page["executionInfos"]:
            events = await client.get_workflow_execution_history(
                domain=DOMAIN, execution=info["execution"]
            )
            started = events["events"][0]["workflowExecutionStartedEventAttributes"]
            found[info["execution"]["workflowId"]] = started["input"]
    return found


async def test_each_id_starts_one_execution_whose_input_names_the_flow(
    aws: MotoServer, domain: str
) -> None:
    summary = await submit_to(aws, ["a", "b", "a", "c"])

    assert sorted(summary.started_ids) == ["a", "b", "c"]  # a duplicate runs once
    inputs = await open_inputs(aws)
    assert json.loads(inputs["a"]) == {
        "flow": FLOW,
        "params": PARAMS,
        "force": [],
        "skip": [],
        "reason": None,
        "prefix": "{workflow_id}/steps/",
        "store": None,
        "retry": {"max_attempts": 3, "retry_delay": 5.0, "max_retry_delay": 300.0},
    }


async def test_an_id_repeated_while_it_starts_is_counted_and_told_to_on_id(
    aws: MotoServer, domain: str
) -> None:
    session = aws.session()
    told: list[tuple[str, str]] = []
    repeat_read = anyio.Event()

    def on_id(wid: str, outcome: str, summary: Any) -> None:
        told.append((wid, outcome))
        if outcome == "repeated":
            repeat_read.set()

    async def hold_starts_until_the_repeat_is_read(**_: Any) -> None:
        await repeat_read.wait()  # so "a" is surely starting when it comes again

    session.events.register(
        "before-call.swf.StartWorkflowExecution", hold_starts_until_the_repeat_is_read
    )
    with anyio.fail_after(30):  # only a repeat never counted reaches this
        summary = await submit(
            prepare(FLOW, params=PARAMS),
            ["a", "a", "b"],
            domain=DOMAIN,
            session=session,
            endpoint_url=aws.endpoint_url,
            on_id=on_id,
        )
    assert sorted(summary.started_ids) == ["a", "b"]
    assert ("a", "repeated") in told
    assert len(told) == 3  # every id read, told once: the progress bar reaches its total
    assert (summary.repeated, summary.as_dict()["repeated"]) == (1, 1)


async def test_a_second_submit_of_open_ids_reports_them_already_running(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    await submit_to(aws, ["a", "b"])
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nb\n")

    done = asteps(
        aws, "swf", "submit", FLOW, "--domain", DOMAIN, "--ids", str(ids), "--param",
        "log=/dev/null", "--json", "--no-progress",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["started"], result["already_running"]) == (0, 2)
    assert result["already_running_ids"] == ["a", "b"]
    assert result["retry_file"] is None
    assert len(await open_inputs(aws)) == 2


async def test_a_summary_counts_every_start_and_keeps_the_first_ids_only(
    aws: MotoServer, domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is flat in the number of ids, as a batch's is: a submit of
    tens of thousands of ids kept every started id and run id (and every id
    already running) to the end. Counts stay exact; the first ids are kept."""
    monkeypatch.setattr("asteps.swf._submit.KEPT_IDS", 4, raising=False)
    ids = [f"w{i:02d}" for i in range(10)]
    told: list[int] = []

    def on_id(wid: str, outcome: str, summary: Any) -> None:
        told.append(summary.started)  # exact as it goes, for a progress bar

    first = await submit_to(aws, ids, concurrency=1, on_id=on_id)
    assert (first.started, len(first.started_ids)) == (10, 4)
    assert list(first.started_ids) == ids[:4]  # concurrency 1: in reading order
    assert all(run_id for run_id in first.started_ids.values())
    assert told == list(range(1, 11))

    again = await submit_to(aws, ids, concurrency=1)
    assert (again.started, again.already_running, len(again.already_running_ids)) == (0, 10, 4)
    assert again.as_dict()["already_running"] == 10
    assert again.as_dict()["already_running_ids"] == ids[:4]


def test_a_summary_holds_a_bounded_number_of_ids_after_many() -> None:
    summary = SubmitSummary()
    for i in range(5 * KEPT_IDS):
        summary.record(f"s{i}", "started", f"run-{i}")
        summary.record(f"r{i}", "already running")
    assert (summary.started, summary.already_running) == (5 * KEPT_IDS, 5 * KEPT_IDS)
    assert (len(summary.started_ids), len(summary.already_running_ids)) == (KEPT_IDS, KEPT_IDS)
    data = summary.as_dict()
    assert (data["started"], len(data["started_ids"])) == (5 * KEPT_IDS, KEPT_IDS)
    assert data["started_ids"]["s0"] == "run-0"


async def test_bad_ids_are_refused_with_reasons_and_written_to_the_retry_file(
    aws: MotoServer, domain: str, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("good\nhas:colon\nbad/slash\narn\n")
    retry = tmp_path / "retry.txt"

    done = asteps(
        aws, "swf", "submit", FLOW, "--domain", DOMAIN, "--ids", str(ids), "--param",
        "log=/dev/null", "--json", "--no-progress", "--failed-file", str(retry),
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["started"] == 1
    assert sorted(result["refused_ids"]) == ["arn", "bad/slash", "has:colon"]
    assert "SWF workflowId" in result["refused_ids"]["has:colon"]
    assert retry.read_text().splitlines() == ["has:colon", "bad/slash", "arn"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "nope=1", "--param", "log=x"], "parameters do not fit"),
        (["--param", "log=x", "--force", "bad pattern"], "bad pattern"),
        (["--param", "log=" + "x" * 40_000], "SWF allows 32,768"),
    ],
    ids=["unknown param", "bad pattern", "input too long"],
)
async def test_bad_input_exits_2_before_any_execution_starts(
    aws: MotoServer, domain: str, tmp_path: Path, args: list[str], message: str
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("a\n")
    done = asteps(aws, "swf", "submit", FLOW, "--domain", DOMAIN, "--ids", str(ids), *args)
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
    assert await open_inputs(aws) == {}


async def test_an_unknown_domain_exits_2_and_says_to_run_init(aws: MotoServer, domain: str) -> None:
    done = asteps(aws, "swf", "submit", FLOW, "--domain", "nope", "--ids", "-", "--param", "log=x")
    assert done.returncode == 2
    assert "asteps swf init --domain nope" in " ".join(done.stderr.split())


async def test_swf_refusing_the_credentials_exits_3(aws: MotoServer, domain: str) -> None:
    aws.enforce_iam()
    try:
        done = asteps(
            aws, "swf", "submit", FLOW, "--domain", DOMAIN, "--ids", "-", "--param", "log=x"
        )
    finally:
        aws.enforce_iam(False)
    assert done.returncode == 3, done.stderr
    assert "InvalidClientTokenId" in done.stderr


def test_prepare_refuses_what_no_worker_could_run() -> None:
    with pytest.raises(FlowError, match="does not exist"):
        prepare("nowhere.py:flow")
    with pytest.raises(FlowError, match="parameters do not fit"):
        prepare(FLOW)  # log is required
    with pytest.raises(InvalidStepName):
        prepare(FLOW, params=PARAMS, skip=["a..b"])
    with pytest.raises(FlowInputError, match="32,768"):
        prepare(FLOW, params={"log": "x" * 33_000})
    with pytest.raises(InvalidStepName, match="does not hold"):
        prepare(FLOW, params=PARAMS, prefix="shared/steps/")


def test_an_input_whose_prefix_workflows_would_share_cannot_even_be_built() -> None:
    with pytest.raises(ValidationError, match="does not hold"):
        FlowInput(flow=FLOW, params=PARAMS, prefix="steps/{workflow_id}")


def accept_input(data: dict[str, Any], *allowed: str) -> Any:
    """What a worker running FLOW on memory:// (and ``allowed``) makes of ``data``."""
    task = {"input": json.dumps(data), "workflowExecution": {"workflowId": "w1"}}
    return accept(task, load_flow(FLOW), flow_names(FLOW), StoreAllowList("memory://", allowed))


GOOD = {"flow": FLOW, "params": PARAMS}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"force": "abc"}, "force", "valid array"),
        ({"skip": {"a": 1}}, "skip", "valid array"),
        ({"force": ["a", 1]}, "force.1", "valid string"),
        ({"force": ["a..b"]}, "force", "empty segment"),
        ({"params": ["log", "x"]}, "params", "should be an object"),
        ({"prefix": "{workflow_id}/../{workflow_id}/"}, "prefix", "must be relative"),
        ({"params": {"log": 1}}, "params.log", "valid string"),
        ({"reason": 42}, "reason", "valid string"),
        ({"reason": "r" * 5000}, "reason", "at most 4096"),
        ({"prefix": "shared/"}, "prefix", "does not hold"),
        ({"prefix": "{workflow_id!r}/"}, "prefix", "conversion"),
        ({"prefix": ""}, "prefix", "at least 1"),
        ({"store": 1}, "store", "valid string"),
        ({"retry": {"max_attempts": "3"}}, "retry.max_attempts", "valid integer"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts", "greater than or equal to 1"),
        ({"retry": {"retry_delay": 1e308 * 10}}, "retry.retry_delay", "finite"),
        ({"flow": None}, "flow", "valid string"),
        ({"endpoint_url": "http://x"}, "endpoint_url", "Extra inputs"),
    ],
)
def test_a_worker_refuses_input_of_the_wrong_shape_naming_the_field(
    change: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(FlowInputError) as refused:
        accept_input({**GOOD, **change})
    assert f"{field}: " in str(refused.value)
    assert message in str(refused.value)


def test_a_worker_refuses_an_input_whose_prefix_is_too_long_for_this_workflow() -> None:
    data = {**GOOD, "prefix": "{workflow_id}/" * 4}
    task = {"input": json.dumps(data), "workflowExecution": {"workflowId": "w" * 250}}
    with pytest.raises(InvalidStepName, match="S3's 1024-byte limit"):
        accept(task, load_flow(FLOW), flow_names(FLOW), StoreAllowList("memory://"))


def test_a_worker_accepts_its_flow_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FLOWS.parent)
    for spelling in (FLOW, "swf_flows.py:three_steps", "./swf_flows.py:three_steps",
                     f"../flows/{FLOWS.name}:three_steps"):  # fmt: skip
        spec, store = accept_input({**GOOD, "flow": spelling})
        assert (spec.flow, store) == (spelling, "memory://")
    (tmp_path / "copy.py").write_text(FLOWS.read_text())
    for other in (f"{tmp_path / 'copy.py'}:three_steps", f"{FLOWS}:slow", "swf_flows:three_steps"):
        with pytest.raises(FlowInputError, match="another flow"):
            accept_input({**GOOD, "flow": other})


def test_a_module_spelling_matches_a_worker_started_from_that_module_or_its_file() -> None:
    names = flow_names("asteps._demo:demo_flow", load_flow("asteps._demo:demo_flow"))
    assert flow_names("asteps._demo:demo_flow") <= names
    demo_file = Path(asteps_demo.__file__)
    assert flow_names(f"{demo_file}:demo_flow") <= names
    assert not flow_names("asteps._demo:other") & names


async def test_submit_to_a_domain_without_types_raises_before_starting(aws: MotoServer) -> None:
    with pytest.raises(SwfNotSetUp, match="asteps swf init"):
        await submit_to(aws, ["a"])


@pytest.mark.parametrize("kind", ["activity", "workflow"])
async def test_submit_to_a_deprecated_type_raises_before_starting_saying_what_helps(
    aws: MotoServer, domain: str, kind: str
) -> None:
    """A deprecated activity type would fail every execution at its first
    decision, and `swf init` cannot register it again."""
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        deprecate = getattr(client, f"deprecate_{kind}_type")
        await deprecate(domain=DOMAIN, **{f"{kind}Type": {"name": "asteps.flow", "version": "1"}})
    with pytest.raises(SwfNotSetUp, match=f"{kind} type asteps.flow version 1 is deprecated"):
        await submit_to(aws, ["a"])
    assert await open_inputs(aws) == {}


async def test_throttled_starts_are_retried(
    aws: MotoServer, domain: str, flaky: FlakyProxy
) -> None:
    # One throttle (botocore's retry waits up to 1 s: see test_s3_store.py)
    flaky.fail_next(1, method="POST")
    summary = await submit_to(aws, ["a", "b"], endpoint_url=flaky.endpoint_url, concurrency=1)
    assert sorted(summary.started_ids) == ["a", "b"]
    assert flaky.failed == 1


async def test_starts_are_spaced_to_the_rate_asked() -> None:
    limiter = RateLimiter(20)
    began = anyio.current_time()
    for _ in range(5):
        await limiter.wait()
    # Four intervals of 50 ms at least: the first call does not wait.
    assert anyio.current_time() - began >= 0.2


def test_an_execution_input_round_trips_and_refuses_what_is_not_one() -> None:
    spec = FlowInput(
        flow=FLOW,
        params={"k": "v"},
        force=("a",),
        skip=("b",),
        reason="why",
        prefix="p/{workflow_id}/",
        store="memory://",
        retry=RetryPolicy(max_attempts=5, retry_delay=0.5),
    )
    assert FlowInput.from_json(spec.to_json()) == spec
    for text in (None, "", "not json", "[]", '{"flow": 1}', '{"flow": "f", "params": {"k": 1}}'):
        with pytest.raises(FlowInputError):
            FlowInput.from_json(text)


def test_an_execution_input_that_gives_a_key_twice_is_refused_naming_it() -> None:
    # Parsers differ on which one wins; asteps reads neither.
    flow = json.dumps(FLOW)
    for text, key in (
        (f'{{"flow": "os:system", "flow": {flow}}}', "flow"),
        (f'{{"flow": {flow}, "params": {{"k": "1", "k": "2"}}}}', "k"),
        (f'{{"flow": {flow}, "retry": {{"max_attempts": 1, "max_attempts": 2}}}}', "max_attempts"),
    ):
        with pytest.raises(FlowInputError, match=f"gives the key '{key}' twice"):
            FlowInput.from_json(text)


def test_the_input_size_counts_characters_as_swf_does() -> None:
    # 20,000 characters of non-ASCII text fit: SWF counts é as one character.
    spec = prepare(FLOW, params={"log": "é" * 20_000})
    assert len(spec.to_json()) < 32_768
    assert json.loads(spec.to_json())["params"]["log"] == "é" * 20_000


@pytest.mark.parametrize(
    ("options", "blamed"),
    [
        ({"reason": "x" * 5000}, "--reason: String should have at most 4096 characters"),
        ({"reason": "x" * 4000, "params": {"log": "y" * 29_000}}, "--param values take 29,"),
        ({"force": ["a" * 200] * 200}, "--force patterns take 40,"),
    ],
)
def test_an_input_too_long_blames_the_option_that_makes_it_long(
    options: dict[str, Any], blamed: str
) -> None:
    with pytest.raises(FlowInputError) as refused:
        prepare(FLOW, **{"params": PARAMS, **options})
    assert blamed in str(refused.value)
    assert "swf submit" not in str(refused.value)


@pytest.mark.parametrize(
    ("flow", "warned"),
    [
        (FLOW, True),  # an absolute path
        ("tests/flows/swf_flows.py:three_steps", False),
        ("../wt/flows.py:flow", True),
        ("package.module:flow", False),
    ],
)
def test_submit_warns_of_a_flow_spelled_by_its_place_on_this_machine(
    flow: str, warned: bool
) -> None:
    assert (spelling_warning(flow) is not None) == warned
