"""`asteps swf init | worker | status` as a user runs them (submit has its own file)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from asteps.cli.app import FiniteFloat, main
from asteps.cli.swf import swf as swf_group
from asteps.swf import FLOW_TYPE
from asteps.testing import MotoServer

from .swf_processes import DOMAIN, FLOW, asteps


async def test_init_registers_what_is_missing_and_then_nothing(aws: MotoServer) -> None:
    first = asteps(aws, "swf", "init", "--domain", DOMAIN, "--json")
    again = asteps(aws, "swf", "init", "--domain", DOMAIN)

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "domain": DOMAIN,
        "created": [
            f"domain {DOMAIN} (retention 30 days)",
            f"workflow type {FLOW_TYPE} version 1",
            f"activity type {FLOW_TYPE} version 1",
        ],
    }
    assert again.returncode == 0
    assert "nothing to create" in again.stdout
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        activity = await client.describe_activity_type(
            domain=DOMAIN, activityType={"name": FLOW_TYPE, "version": "1"}
        )
    assert activity["configuration"]["defaultTaskList"] == {"name": "asteps"}


async def test_init_over_a_deprecated_type_exits_2_saying_what_helps(aws: MotoServer) -> None:
    """SWF keeps a deprecated version deprecated: init said all was there."""
    assert asteps(aws, "swf", "init", "--domain", DOMAIN).returncode == 0
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        await client.deprecate_activity_type(
            domain=DOMAIN, activityType={"name": FLOW_TYPE, "version": "1"}
        )
    again = asteps(aws, "swf", "init", "--domain", DOMAIN)
    assert again.returncode == 2, again.stderr
    said = " ".join(again.stderr.split())
    assert f"activity type {FLOW_TYPE} version 1 is deprecated" in said
    assert "new --type-version" in said


def test_a_worker_for_a_flow_that_cannot_load_exits_2_before_polling(aws: MotoServer) -> None:
    done = asteps(aws, "swf", "worker", "nowhere.py:flow", "--domain", DOMAIN)
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_a_worker_for_an_unknown_domain_exits_2_and_says_to_run_init(aws: MotoServer) -> None:
    done = asteps(aws, "swf", "worker", FLOW, "--domain", "nope")
    assert done.returncode == 2
    assert "asteps swf init --domain nope" in " ".join(done.stderr.split())


def test_status_refuses_a_duration_it_cannot_read(aws: MotoServer) -> None:
    done = asteps(aws, "swf", "status", "--domain", DOMAIN, "--since", "soon")
    assert done.returncode == 2
    assert "30m, 7d" in done.stderr


async def test_status_counts_by_state_and_since(aws: MotoServer) -> None:
    assert asteps(aws, "swf", "init", "--domain", DOMAIN).returncode == 0
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        for wid in ("a", "b"):
            await client.start_workflow_execution(
                domain=DOMAIN, workflowId=wid, workflowType={"name": FLOW_TYPE, "version": "1"}
            )
        await client.terminate_workflow_execution(domain=DOMAIN, workflowId="b")

    recent = asteps(aws, "swf", "status", "--domain", DOMAIN, "--since", "1h", "--json")
    table = asteps(aws, "swf", "status", "--domain", DOMAIN)

    assert json.loads(recent.stdout) == {
        "open": 1,
        "completed": 0,
        "failed": 0,
        "timed_out": 0,
        "terminated": 1,
        "canceled": 0,
        "failed_ids": [],
    }
    assert "terminated" in table.stdout


def float_options() -> list[tuple[str, str]]:
    """(command, option) for every float option of every `asteps swf` command."""
    found = []
    for name, command in sorted(swf_group.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, click.FloatRange):
                found.append((name, param.opts[0]))
    return found


def test_every_float_option_is_a_finite_float() -> None:
    options = float_options()
    assert ("worker", "--heartbeat") in options
    assert ("submit", "--rps") in options
    swf_floats = [
        p.type
        for c in swf_group.commands.values()
        for p in c.params
        if isinstance(p.type, click.types.FloatParamType)
    ]
    assert all(isinstance(t, FiniteFloat) for t in swf_floats)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
@pytest.mark.parametrize(("command", "option"), float_options())
def test_nan_and_infinity_exit_2_naming_the_option(command: str, option: str, value: str) -> None:
    args = {
        "worker": ["swf", "worker", FLOW, "--domain", DOMAIN],
        "submit": ["swf", "submit", FLOW, "--domain", DOMAIN, "--ids", "-"],
    }[command]
    done = CliRunner().invoke(main, [*args, option, value])
    assert done.exit_code == 2, done.output
    assert option in done.output
    assert "finite" in done.output


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("99999999999d", "at most 1000d"),
        ("1001d", "at most 1000d"),
        ("0s", "over 0"),
        ("0", "with its unit"),
        ("90", "with its unit"),
        ("1e3d", "with its unit"),
    ],
)
def test_status_refuses_a_duration_without_a_unit_or_out_of_bounds(
    aws: MotoServer, since: str, message: str
) -> None:
    done = asteps(aws, "swf", "status", "--domain", DOMAIN, "--since", since)
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())


def test_a_worker_given_a_retry_policy_says_it_belongs_to_submit(aws: MotoServer) -> None:
    done = asteps(aws, "swf", "worker", FLOW, "--domain", "nope", "--max-attempts", "5")
    assert "swf submit --max-attempts" in " ".join(done.stderr.split())
    assert done.returncode == 2  # then the unknown domain


def test_a_worker_refuses_a_malformed_allowed_store_before_polling(aws: MotoServer) -> None:
    done = asteps(aws, "swf", "worker", FLOW, "--domain", DOMAIN, "--allow-store", "ftp://x")
    assert done.returncode == 3
    assert "ftp://x" in done.stderr
