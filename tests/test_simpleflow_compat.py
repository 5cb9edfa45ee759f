"""asteps against simpleflow 0.36's own step code, run as the reference: the
keys of done markers and the decisions (which steps run, forced, reasons)."""

from __future__ import annotations

import os
from typing import Any

import anyio.to_thread
import pytest

from asteps import Runner, S3Store
from asteps._names import format_prefix


def test_a_prefix_without_a_trailing_slash_is_joined_as_simpleflow_joins_it() -> None:
    # simpleflow's own example of get_step_path_prefix has no trailing '/':
    # os.path.join("people", people_id, "steps"); MarkStepDoneTask joins the
    # name with os.path.join too.
    for template, expected in [
        ("people/{workflow_id}/steps", os.path.join("people", "42", "steps")),
        ("{workflow_id}/steps/", os.path.join("42", "steps/")),
    ]:
        prefix = format_prefix(template, "42", None)
        assert prefix + "export.csv" == os.path.join(expected, "export.csv")


async def test_simpleflows_custom_prefix_is_shared_both_ways(
    s3: S3Store, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simpleflow.step.tasks import GetStepsDoneTask, MarkStepDoneTask

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.endpoint_url)
    path = os.path.join("people", "42", "steps")  # simpleflow's example prefix
    await anyio.to_thread.run_sync(MarkStepDoneTask("steps", path, "my_step").execute)

    runner = Runner(s3, "42", prefix="people/{workflow_id}/steps")
    ran: list[str] = []
    done = await runner.step("my_step", lambda: ran.append("my_step"))
    new = await runner.step("my_step_force", lambda: ran.append("my_step_force"))
    assert (done.status, new.status, ran) == ("skipped", "completed", ["my_step_force"])

    listed = await anyio.to_thread.run_sync(GetStepsDoneTask("steps", path).execute)
    assert sorted(listed) == ["my_step", "my_step_force"]
