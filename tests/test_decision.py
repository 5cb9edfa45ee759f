"""The decision table: force beats skip beats done; reasons come from patterns."""

from __future__ import annotations

import pytest

from asteps import decide
from asteps._decision import ALREADY_PLAYED, decide_with_body

NONE: dict[str, list[str]] = {}

CASES = [
    # (name, force, forced, skipped, done) -> (run, forced, reasons)
    ("a", False, NONE, NONE, set(), (True, False, ())),
    ("a", False, NONE, NONE, {"a"}, (False, False, (ALREADY_PLAYED,))),
    ("a", True, NONE, NONE, {"a"}, (True, True, ())),
    ("a.b", False, {"a": ["r1"]}, NONE, {"a.b"}, (True, True, ("r1",))),
    ("ab", False, {"a": ["r1"]}, NONE, {"ab"}, (False, False, (ALREADY_PLAYED,))),
    ("a.b", False, {"*": ["all"]}, NONE, set(), (True, True, ("all",))),
    ("a.b", False, NONE, {"a": ["s"]}, set(), (False, True, ("s",))),
    ("a.b", False, NONE, {"*": []}, set(), (False, True, ())),
    # force beats skip, and only the forced reasons are given
    ("a.b", False, {"a.b": ["f"]}, {"a": ["s"]}, set(), (True, True, ("f",))),
    ("a.b", True, NONE, {"a": ["s"]}, {"a.b"}, (True, True, ())),
    # reasons of every covering pattern, distinct, in order
    (
        "a.b.c",
        False,
        {"a": ["x", "y"], "a.b": ["y", "z"], "q": ["no"]},
        NONE,
        set(),
        (True, True, ("x", "y", "z")),
    ),
    # a skipped pattern that does not cover leaves the done rule in charge
    ("b", False, NONE, {"a": ["s"]}, {"b"}, (False, False, (ALREADY_PLAYED,))),
    ("b", False, NONE, {"a": ["s"]}, set(), (True, False, ())),
]


@pytest.mark.parametrize(("name", "force", "forced", "skipped", "done", "expected"), CASES)
def test_decision_table(name, force, forced, skipped, done, expected) -> None:  # type: ignore[no-untyped-def]
    d = decide(name, force=force, forced=forced, skipped=skipped, done=done)
    assert (d.run, d.forced, d.reasons) == expected


def test_decision_names_the_patterns_that_decided() -> None:
    d = decide("a.b", force=False, forced={"a": ["r"], "c": ["q"]}, skipped={}, done=())
    assert d.patterns == ("a",)
    assert d.action == "run"


DONE = decide("a", force=False, forced={}, skipped={}, done={"a"})


@pytest.mark.parametrize(
    ("keeps", "problem", "stored", "rerun_on_new_version", "on_missing", "expected"),
    [
        (True, None, None, False, "run", (False, False, (ALREADY_PLAYED, "result kept"))),
        (True, "result missing", None, False, "run", (True, True, ("result missing",))),
        (
            True,
            "result missing",
            None,
            False,
            "none",
            (False, False, (ALREADY_PLAYED, "result missing")),
        ),
        (
            True,
            "result missing",
            None,
            False,
            "error",
            (False, False, (ALREADY_PLAYED, "result missing")),
        ),
        (False, None, "1", True, "run", (True, True, ("version 1 -> 2",))),
        (False, None, "2", True, "run", (False, False, (ALREADY_PLAYED,))),
        (False, None, "1", False, "run", (False, False, (ALREADY_PLAYED,))),
        (True, "result missing", "1", True, "run", (True, True, ("version 1 -> 2",))),
        # Another writer may store the version as a JSON integer: 2 is version "2".
        (False, None, 2, True, "run", (False, False, (ALREADY_PLAYED,))),
        (False, None, 3, True, "run", (True, True, ("version 3 -> 2",))),
        (False, None, True, True, "run", (True, True, ("version True -> 2",))),
    ],
)
def test_a_done_step_is_reconsidered_once_its_body_is_read(
    keeps: bool,
    problem: str | None,
    stored: object,
    rerun_on_new_version: bool,
    on_missing: str,
    expected: tuple[bool, bool, tuple[str, ...]],
) -> None:
    decision = decide_with_body(
        DONE,
        keeps_result=keeps,
        result_problem=problem,
        stored_version=stored,
        version="2",
        rerun_on_new_version=rerun_on_new_version,
        on_missing_result=on_missing,
    )
    assert (decision.run, decision.forced, decision.reasons) == expected


def test_a_body_that_cannot_be_read_reruns_a_step_on_a_new_version_saying_why() -> None:
    """Its version is unknown, so the step reruns, and the reason says the body
    could not be read: not "version None -> 2", as if the marker had none."""
    decision = decide_with_body(
        DONE,
        keeps_result=False,
        result_problem=None,
        stored_version=None,
        version="2",
        rerun_on_new_version=True,
        on_missing_result="run",
        unreadable="marker wf/steps/a is not JSON",
    )
    assert (decision.run, decision.forced) == (True, True)
    assert decision.reasons == ("version unreadable -> 2: marker wf/steps/a is not JSON",)


def test_a_step_played_by_a_runner_that_left_no_run_id_says_another_run() -> None:
    # A marker another tool wrote (simpleflow's have no run id) read
    # "Step was played by run None".
    from asteps._decision import played_by

    assert played_by("r1").reasons == ("Step was played by run r1",)
    assert played_by(None).reasons == ("Step was played by another run",)
