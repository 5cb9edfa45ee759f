"""asteps against simpleflow 0.36's own step code, run as the reference: the
keys of done markers and the decisions (which steps run, forced, reasons)."""

from __future__ import annotations

import os
import random
from typing import Any

import anyio.to_thread
import pytest

from asteps import MemoryStore, Runner, S3Store
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


# -- decisions -------------------------------------------------------------------

Op = tuple[str, list[str], "str | None"]
"""("force" or "skip", patterns, reason): one add_forced_steps/add_skipped_steps."""


def simpleflows_decision(
    ops: list[Op], name: str, force: bool, done: list[str]
) -> tuple[bool, bool, list[str]]:
    """What simpleflow's Step.submit decides (simpleflow.step.utils, its
    WorkflowStepMixin keeping the patterns and reasons): run, forced, reasons."""
    from simpleflow.step import utils
    from simpleflow.step.workflow import WorkflowStepMixin

    workflow: Any = type("W", (WorkflowStepMixin,), {})()
    for kind, patterns, reason in ops:
        add = workflow.add_forced_steps if kind == "force" else workflow.add_skipped_steps
        add(patterns, reason)
    forced, skipped = workflow.get_forced_steps(), workflow.get_skipped_steps()
    if utils.step_will_run(name, forced, skipped, done, force):
        if not utils.step_is_forced(name, forced, force):
            return True, False, []
        table = getattr(workflow, "steps_forced_reasons", {})
        return True, True, utils.get_step_force_reasons(name, table)
    if utils.step_is_skipped_by_force(name, skipped):
        table = getattr(workflow, "steps_skipped_reasons", {})
        return False, True, utils.get_step_skip_reasons(name, table)
    return False, False, ["Step was already played"]


async def asteps_decision(
    ops: list[Op], name: str, force: bool, done: list[str]
) -> tuple[bool, bool, list[str]]:
    runner = Runner(MemoryStore(), "wf", dry_run=True, done=done)
    for kind, patterns, reason in ops:
        add = runner.add_forced_steps if kind == "force" else runner.add_skipped_steps
        add(patterns, reason)
    outcome = await runner.step(name, lambda: None, force=force)
    return outcome.decision == "run", outcome.forced, list(outcome.reasons)


async def test_reasons_come_in_simpleflows_order_when_a_pattern_is_given_one_later() -> None:
    # simpleflow lists the reasons pattern by pattern, in the order each
    # pattern was first given a reason: "a" got r1 before "a.b" got r2.
    ops: list[Op] = [
        ("force", ["a.b", "a"], None),
        ("force", ["a"], "r1"),
        ("force", ["a.b"], "r2"),
    ]
    expected = (True, True, ["r1", "r2"])
    assert simpleflows_decision(ops, "a.b.c", False, []) == expected
    assert await asteps_decision(ops, "a.b.c", False, []) == expected


async def test_decisions_match_simpleflows_on_many_mixes_of_patterns() -> None:
    names = ["a", "a.b", "a.b.c", "ab", "ab.c", "b"]
    patterns = ["*", "a", "a.b", "a.b.c", "ab", "b"]
    rng = random.Random(20240607)
    compared = 0
    for _ in range(3000):
        ops: list[Op] = [
            (rng.choice(["force", "skip"]), rng.sample(patterns, rng.randint(1, 2)), reason)
            for reason in rng.choices([None, "r1", "r2", "r3"], k=rng.randint(0, 4))
        ]
        given: dict[tuple[str, str], set[str]] = {}
        for kind, pats, reason in ops:
            for pattern in pats:
                given.setdefault((kind, pattern), set()).update([reason] if reason else [])
        if any(len(reasons) > 1 for reasons in given.values()):
            continue  # simpleflow keeps a pattern's reasons in a set: no order to compare
        name, force = rng.choice(names), rng.random() < 0.2
        done = rng.sample(names, rng.randint(0, 3))
        run, forced, reasons = simpleflows_decision(ops, name, force, done)
        # asteps lists each reason once (docs/concepts.md); simpleflow repeats
        # one that several covering patterns were given.
        expected = (run, forced, list(dict.fromkeys(reasons)))
        assert await asteps_decision(ops, name, force, done) == expected, (ops, name, force, done)
        compared += 1
    assert compared > 1500
