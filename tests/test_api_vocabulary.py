"""The public API's vocabulary (issue 23, point 10): one name per idea, and
every old name kept working for a release, with a warning where it is cheap."""

from __future__ import annotations

import warnings

import pytest

from asteps import EventBus
from asteps.swf import Execution, SwfSignalBridge


def make_bridge(executions: object) -> SwfSignalBridge:
    # Nothing is opened: the executions are read by the constructor (which
    # needs a running loop, hence the async tests).
    return SwfSignalBridge(EventBus(), domain="d", executions=executions)  # type: ignore[arg-type]


def test_an_execution_names_a_workflow_id_and_maybe_a_run() -> None:
    assert Execution("a") == ("a", None)
    assert Execution("a", "run-1").run_id == "run-1"


async def test_a_list_of_executions_is_read_as_several_executions() -> None:
    bridge = make_bridge([Execution("a"), Execution("b")])
    assert bridge.executions == [Execution("a"), Execution("b")]


async def test_one_execution_is_read_as_one_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bridge = make_bridge(Execution("a", "b"))
    assert bridge.executions == [Execution("a", "b")]


async def test_a_bare_pair_of_strings_is_read_as_asteps_0_1_did_with_a_warning() -> None:
    # ("a", "b") could be two workflow ids; 0.1 read a workflow id and a run id.
    with pytest.warns(DeprecationWarning, match=r"Execution\(workflow_id, run_id\)"):
        bridge = make_bridge(("a", "b"))
    assert bridge.executions == [Execution("a", "b")]


async def test_a_string_is_refused_with_the_form_to_use() -> None:
    from asteps.errors import SignalError

    with pytest.raises(SignalError, match=r"\[Execution\('wf'\)\]"):
        make_bridge("wf")
