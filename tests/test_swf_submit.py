"""`submit` and `asteps swf submit` against moto's SWF: what starts, what is
already running, what is refused, and what never reaches SWF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from asteps._flows import load_flow
from asteps.errors import FlowError, InvalidStepName
from asteps.swf import FlowInput, FlowInputError, SwfNotSetUp, prepare, submit
from asteps.swf._activity import accept
from asteps.swf._submit import RateLimiter
from asteps.testing import MotoServer

from .conftest import FlakyProxy
from .test_swf_worker import DOMAIN, FLOW, asteps

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

    assert sorted(summary.started) == ["a", "b", "c"]  # a duplicate runs once
    inputs = await open_inputs(aws)
    assert json.loads(inputs["a"]) == {
        "flow": FLOW,
        "params": PARAMS,
        "force": [],
        "skip": [],
        "reason": None,
        "prefix": "{workflow_id}/steps/",
        "store": None,
    }


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


async def test_submit_refuses_an_input_whose_prefix_workflows_would_share(
    aws: MotoServer, domain: str
) -> None:
    spec = FlowInput(FLOW, PARAMS, prefix="steps/{workflow_id}")  # not from prepare()
    with pytest.raises(InvalidStepName, match="does not hold"):
        await submit(spec, ["w1", "w12"], domain=DOMAIN, session=aws.session(),
                     endpoint_url=aws.endpoint_url)  # fmt: skip
    assert await open_inputs(aws) == {}


def test_a_worker_refuses_an_input_whose_prefix_workflows_would_share() -> None:
    spec = FlowInput(FLOW, PARAMS, prefix="shared/")
    task = {"input": spec.to_json(), "workflowExecution": {"workflowId": "w1"}}
    with pytest.raises(InvalidStepName, match="does not hold"):
        accept(task, FLOW, load_flow(FLOW))


async def test_submit_to_a_domain_without_types_raises_before_starting(aws: MotoServer) -> None:
    with pytest.raises(SwfNotSetUp, match="asteps swf init"):
        await submit_to(aws, ["a"])


async def test_throttled_starts_are_retried(
    aws: MotoServer, domain: str, flaky: FlakyProxy
) -> None:
    flaky.fail_next(3, method="POST")
    summary = await submit_to(aws, ["a", "b"], endpoint_url=flaky.endpoint_url, concurrency=1)
    assert sorted(summary.started) == ["a", "b"]
    assert flaky.failed == 3


async def test_starts_are_spaced_to_the_rate_asked() -> None:
    limiter = RateLimiter(20)
    began = anyio.current_time()
    for _ in range(5):
        await limiter.wait()
    # Four intervals of 50 ms at least: the first call does not wait.
    assert anyio.current_time() - began >= 0.2


def test_an_execution_input_round_trips_and_refuses_what_is_not_one() -> None:
    spec = FlowInput(FLOW, {"k": "v"}, ("a",), ("b",), "why", "p/{workflow_id}/", "memory://")
    assert FlowInput.from_json(spec.to_json()) == spec
    for text in ("not json", "[]", '{"flow": 1}', '{"flow": "f", "params": {"k": 1}}'):
        with pytest.raises(FlowInputError):
            FlowInput.from_json(text)
