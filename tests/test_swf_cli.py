"""`asteps swf init | worker | status` as a user runs them (submit has its own file)."""

from __future__ import annotations

import json

from asteps.swf import FLOW_TYPE
from asteps.testing import MotoServer

from .test_swf_worker import DOMAIN, FLOW, asteps


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
