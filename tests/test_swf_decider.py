"""The decider: a history in, decisions out. Pure: no SWF, no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asteps._json import MAX_DEPTH
from asteps.swf import FLOW_TYPE, FlowInput, RetryPolicy, next_decisions
from asteps.swf._types import SWF_DETAILS_LIMIT, failure_details, read_failure_details

INPUT = '{"flow": "f.py:flow"}'  # from an older submit: no retry policy, the defaults


def started(policy: RetryPolicy | None = None) -> dict[str, Any]:
    """An execution started with ``policy`` in its input (none: an older input)."""
    text = INPUT if policy is None else FlowInput(flow="f.py:flow", retry=policy).to_json()
    return event("WorkflowExecutionStarted", input=text, taskList={"name": "tl"})


def event(kind: str, **attributes: Any) -> dict[str, Any]:
    key = kind[0].lower() + kind[1:] + "EventAttributes"
    return {"eventType": kind, key: attributes}


STARTED = started()


def scheduled(attempt: int) -> list[dict[str, Any]]:
    return [
        event("DecisionTaskCompleted"),
        event("ActivityTaskScheduled", activityId=f"{FLOW_TYPE}-{attempt}"),
        event("ActivityTaskStarted"),
    ]


def failed(reason: str = "step b failed: RuntimeError: boom", *, retryable: bool = True) -> Any:
    details = failure_details(reason, retryable=retryable)
    return event("ActivityTaskFailed", reason=reason, details=details)


def timed_out() -> dict[str, Any]:
    return event("ActivityTaskTimedOut", timeoutType="HEARTBEAT")


def retried(attempt: int) -> list[dict[str, Any]]:
    return [
        event("TimerStarted", timerId=f"retry-{attempt}"),
        event("TimerFired", timerId=f"retry-{attempt}"),
    ]


def kinds(decisions: list[dict[str, Any]]) -> list[str]:
    return [d["decisionType"] for d in decisions]


def test_a_new_execution_schedules_its_activity_on_its_task_list() -> None:
    [decision] = next_decisions([STARTED, event("DecisionTaskScheduled")])
    attributes = decision["scheduleActivityTaskDecisionAttributes"]
    assert decision["decisionType"] == "ScheduleActivityTask"
    assert attributes["activityType"] == {"name": "asteps.flow", "version": "1"}
    assert attributes["activityId"] == "asteps.flow-1"
    assert attributes["input"] == INPUT
    assert attributes["taskList"] == {"name": "tl"}
    assert attributes["heartbeatTimeout"] == "30"  # three heartbeats of 10 s
    assert attributes["startToCloseTimeout"] == "NONE"


def test_a_completed_activity_completes_the_execution_with_its_summary() -> None:
    result = json.dumps({"steps": {"completed": 3}})
    history = [STARTED, *scheduled(1), event("ActivityTaskCompleted", result=result)]
    assert next_decisions(history) == [
        {
            "decisionType": "CompleteWorkflowExecution",
            "completeWorkflowExecutionDecisionAttributes": {"result": result},
        }
    ]


@pytest.mark.parametrize(
    ("ending", "attempts", "expected_delay"),
    [
        (failed(), 1, "5"),
        (timed_out(), 1, "5"),
        (failed(), 2, "10"),
    ],
)
def test_a_failed_or_timed_out_attempt_waits_on_a_timer_doubling_each_time(
    ending: dict[str, Any], attempts: int, expected_delay: str
) -> None:
    history = [STARTED]
    for attempt in range(1, attempts):
        history += [*scheduled(attempt), failed(), *retried(attempt)]
    history += [*scheduled(attempts), ending]
    [decision] = next_decisions(history)
    assert decision == {
        "decisionType": "StartTimer",
        "startTimerDecisionAttributes": {
            "timerId": f"retry-{attempts}",
            "startToFireTimeout": expected_delay,
        },
    }


def test_a_fired_timer_schedules_the_next_attempt_under_a_new_id() -> None:
    history = [STARTED, *scheduled(1), timed_out(), *retried(1)]
    [decision] = next_decisions(history)
    assert decision["decisionType"] == "ScheduleActivityTask"
    assert decision["scheduleActivityTaskDecisionAttributes"]["activityId"] == "asteps.flow-2"


def test_after_max_attempts_the_execution_fails_with_the_last_reason() -> None:
    history = [STARTED]
    for attempt in (1, 2):
        history += [*scheduled(attempt), failed(), *retried(attempt)]
    history += [*scheduled(3), failed("step c failed: ValueError: no")]
    [decision] = next_decisions(history)
    assert decision["decisionType"] == "FailWorkflowExecution"
    attributes = decision["failWorkflowExecutionDecisionAttributes"]
    assert attributes["reason"] == "step c failed: ValueError: no"
    assert json.loads(attributes["details"]) == {
        "attempts": 3,
        "retryable": True,
        "error": "step c failed: ValueError: no",
    }


def test_a_last_heartbeat_timeout_fails_with_timed_out_heartbeat() -> None:
    history = [started(RetryPolicy(max_attempts=1)), *scheduled(1), timed_out()]
    [decision] = next_decisions(history)
    assert decision["failWorkflowExecutionDecisionAttributes"]["reason"] == "timed out: HEARTBEAT"


def test_a_failure_marked_not_retryable_fails_at_once() -> None:
    history = [STARTED, *scheduled(1), failed("cannot load the flow", retryable=False)]
    [decision] = next_decisions(history)
    assert decision["decisionType"] == "FailWorkflowExecution"
    details = json.loads(decision["failWorkflowExecutionDecisionAttributes"]["details"])
    assert details["retryable"] is False


def test_a_failure_from_another_tool_without_asteps_details_is_retried() -> None:
    history = [STARTED, *scheduled(1), event("ActivityTaskFailed", reason="x", details="text")]
    assert kinds(next_decisions(history)) == ["StartTimer"]


def test_failure_details_nested_too_deep_are_a_retryable_error_in_words_cut_short() -> None:
    # Anyone allowed to poll the task list may fail an attempt with such details.
    deep = event("ActivityTaskFailed", reason="rogue", details="[" * 20_000)
    assert kinds(next_decisions([STARTED, *scheduled(1), deep])) == ["StartTimer"]
    last = [started(RetryPolicy(max_attempts=1)), *scheduled(1), deep]
    [decision] = next_decisions(last)
    details = json.loads(decision["failWorkflowExecutionDecisionAttributes"]["details"])
    assert details["retryable"] is True
    assert "unreadable failure details" in details["error"]
    assert f"over {MAX_DEPTH}" in details["error"]
    assert len(details["error"]) < 300


def test_a_long_error_of_astral_characters_gives_details_within_swfs_limit_naming_it() -> None:
    # json.dumps writes each of these as 12 characters (two \\u escapes).
    error = "bad customer name: " + "\U0001f600" * 5000
    details = failure_details(error, retryable=False)
    assert len(details.encode("utf-8")) <= SWF_DETAILS_LIMIT  # however SWF counts
    retryable, drained, read = read_failure_details(details)
    assert (retryable, drained) == (False, False)
    assert read is not None
    assert read.startswith("bad customer name: \U0001f600")
    assert read.endswith("…")


def test_an_executions_failure_details_are_json_within_swfs_limit_whatever_the_error() -> None:
    # Details as long as SWF allows, from another tool: each é is 6 characters of JSON.
    foreign = event("ActivityTaskFailed", reason="x", details="é" * SWF_DETAILS_LIMIT)
    history = [started(RetryPolicy(max_attempts=1)), *scheduled(1), foreign]
    [decision] = next_decisions(history)
    details = decision["failWorkflowExecutionDecisionAttributes"]["details"]
    assert len(details.encode("utf-8")) <= SWF_DETAILS_LIMIT
    data = json.loads(details)
    assert data["attempts"] == 1
    assert data["error"].startswith("éé")


def test_a_long_reason_is_cut_to_swfs_256_characters() -> None:
    history = [STARTED, *scheduled(1), failed("x" * 1000, retryable=False)]
    [decision] = next_decisions(history)
    assert len(decision["failWorkflowExecutionDecisionAttributes"]["reason"]) == 256


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([STARTED, *scheduled(1)], id="activity running"),
        pytest.param([STARTED, *scheduled(1), event("WorkflowExecutionSignaled")], id="signal"),
        pytest.param(
            [STARTED, *scheduled(1), failed(), event("TimerStarted", timerId="retry-1")],
            id="timer running",
        ),
        pytest.param(
            [
                STARTED,
                *scheduled(1),
                event("ActivityTaskCompleted", result="{}"),
                event("WorkflowExecutionCompleted"),
            ],
            id="closed",
        ),
    ],
)
def test_nothing_is_decided_while_waiting_or_once_closed(history: list[dict[str, Any]]) -> None:
    assert next_decisions(history) == []


def test_an_activity_type_that_is_not_registered_fails_with_what_to_run() -> None:
    failure = event(
        "ScheduleActivityTaskFailed",
        activityType={"name": FLOW_TYPE, "version": "1"},
        cause="ACTIVITY_TYPE_DOES_NOT_EXIST",
    )
    [decision] = next_decisions([STARTED, failure])
    reason = decision["failWorkflowExecutionDecisionAttributes"]["reason"]
    assert "ACTIVITY_TYPE_DOES_NOT_EXIST" in reason
    assert "asteps swf init" in reason


def test_a_deprecated_activity_type_fails_with_a_new_version_to_use_not_init() -> None:
    # `swf init` registers the version asked: for a deprecated one it cannot help.
    failure = event(
        "ScheduleActivityTaskFailed",
        activityType={"name": FLOW_TYPE, "version": "1"},
        cause="ACTIVITY_TYPE_DEPRECATED",
    )
    [decision] = next_decisions([STARTED, failure])
    reason = decision["failWorkflowExecutionDecisionAttributes"]["reason"]
    assert reason.startswith(f"cannot schedule activity {FLOW_TYPE} version 1: ")
    assert "ACTIVITY_TYPE_DEPRECATED" in reason
    assert "new --type-version" in reason
    assert "undeprecate version 1" in reason
    assert "register it with" not in reason


def throttled_schedule() -> dict[str, Any]:
    return event(
        "ScheduleActivityTaskFailed",
        activityType={"name": FLOW_TYPE, "version": "1"},
        activityId=f"{FLOW_TYPE}-1",
        cause="ACTIVITY_CREATION_RATE_EXCEEDED",
    )


def test_a_schedule_swf_throttled_is_made_again_after_a_timer_not_failed() -> None:
    # A large batch can pass SWF's rate of new activity tasks: that passes.
    history = [started(RetryPolicy(max_attempts=1)), event("DecisionTaskCompleted")]
    history.append(throttled_schedule())
    [wait] = next_decisions(history)
    assert wait["decisionType"] == "StartTimer"
    first = wait["startTimerDecisionAttributes"]
    history += [event("TimerStarted", **first), event("TimerFired", timerId=first["timerId"])]
    [again] = next_decisions(history)
    assert again["decisionType"] == "ScheduleActivityTask"
    assert again["scheduleActivityTaskDecisionAttributes"]["activityId"] == f"{FLOW_TYPE}-1"
    # Throttled again: a new timer id, a longer wait.
    history.append(throttled_schedule())
    [wait] = next_decisions(history)
    second = wait["startTimerDecisionAttributes"]
    assert second["timerId"] != first["timerId"]
    assert int(second["startToFireTimeout"]) > int(first["startToFireTimeout"])
    # No attempt was used: the one allowed runs, and its failure is the first.
    history += [event("TimerStarted", **second), event("TimerFired", timerId=second["timerId"])]
    history += [*scheduled(1), failed()]
    [fail] = next_decisions(history)
    details = json.loads(fail["failWorkflowExecutionDecisionAttributes"]["details"])
    assert details["attempts"] == 1


def test_a_cancel_request_cancels_the_running_activity_then_the_execution() -> None:
    asked = event("WorkflowExecutionCancelRequested")
    running = [STARTED, *scheduled(1), asked]
    assert next_decisions(running) == [
        {
            "decisionType": "RequestCancelActivityTask",
            "requestCancelActivityTaskDecisionAttributes": {"activityId": "asteps.flow-1"},
        }
    ]
    requested = [*running, event("ActivityTaskCancelRequested")]
    assert next_decisions(requested) == []
    canceled = [*requested, event("ActivityTaskCanceled")]
    assert kinds(next_decisions(canceled)) == ["CancelWorkflowExecution"]


def test_a_cancel_request_during_a_back_off_cancels_the_timer_and_the_execution() -> None:
    history = [
        STARTED,
        *scheduled(1),
        failed(),
        event("TimerStarted", timerId="retry-1"),
        event("WorkflowExecutionCancelRequested"),
    ]
    assert kinds(next_decisions(history)) == ["CancelTimer", "CancelWorkflowExecution"]


RESULT = '{"workflow_id": "wf", "steps": {"completed": 3, "skipped": 0, "failed": 0}}'


@pytest.mark.parametrize(
    "late",
    [
        pytest.param(
            [
                event("ActivityTaskCompleted", result=RESULT),
                event("WorkflowExecutionCancelRequested"),
            ],
            id="asked-once-the-flow-completed",
        ),
        pytest.param(
            [
                event("WorkflowExecutionCancelRequested"),
                event("DecisionTaskCompleted"),
                event("ActivityTaskCancelRequested"),
                event("ActivityTaskCompleted", result=RESULT),
            ],
            id="the-flow-completed-before-heeding-it",
        ),
        pytest.param(
            [
                event("ActivityTaskCompleted", result=RESULT),
                event("DecisionTaskStarted"),
                event("WorkflowExecutionCancelRequested"),
                event("DecisionTaskCompleted"),
                event("CompleteWorkflowExecutionFailed", cause="UNHANDLED_DECISION"),
                event("DecisionTaskScheduled"),
            ],
            id="asked-while-the-completion-was-decided",
        ),
    ],
)
def test_a_cancel_request_too_late_to_stop_the_flow_completes_with_its_result(
    late: list[dict[str, Any]],
) -> None:
    assert next_decisions([STARTED, *scheduled(1), *late]) == [
        {
            "decisionType": "CompleteWorkflowExecution",
            "completeWorkflowExecutionDecisionAttributes": {"result": RESULT},
        }
    ]


def test_a_cancel_request_after_a_failed_attempt_cancels_rather_than_retries() -> None:
    history = [STARTED, *scheduled(1), failed(), event("WorkflowExecutionCancelRequested")]
    assert kinds(next_decisions(history)) == ["CancelWorkflowExecution"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"retry_delay": float("nan")}, "retry_delay"),
        ({"max_retry_delay": float("inf")}, "max_retry_delay"),
    ],
)
def test_a_bad_policy_is_refused_with_its_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def drained() -> dict[str, Any]:
    reason = "the worker stopped before the flow ended"
    details = failure_details(reason, retryable=True, drained=True)
    return event("ActivityTaskFailed", reason=reason, details=details)


def test_a_drained_attempt_is_scheduled_again_at_once_under_a_new_id() -> None:
    history = [STARTED, *scheduled(1), drained()]
    [decision] = next_decisions(history)
    assert decision["decisionType"] == "ScheduleActivityTask"  # no back-off timer
    assert decision["scheduleActivityTaskDecisionAttributes"]["activityId"] == "asteps.flow-2"


def test_three_rolling_deploys_do_not_use_up_a_single_attempt() -> None:
    history = [started(RetryPolicy(max_attempts=1))]
    for attempt in (1, 2, 3):
        history += [*scheduled(attempt), drained()]
    [decision] = next_decisions(history)
    assert decision["decisionType"] == "ScheduleActivityTask"
    # The one attempt that counts fails: the execution fails with it.
    history += [*scheduled(4), failed("step b failed: RuntimeError: boom")]
    [decision] = next_decisions(history)
    assert decision["decisionType"] == "FailWorkflowExecution"
    details = json.loads(decision["failWorkflowExecutionDecisionAttributes"]["details"])
    assert details["attempts"] == 1


def test_drains_between_failures_neither_count_nor_reuse_a_timer_id() -> None:
    history = [STARTED, *scheduled(1), failed(), *retried(1), *scheduled(2), drained()]
    history += [*scheduled(3), failed()]
    [decision] = next_decisions(history)
    assert decision == {
        "decisionType": "StartTimer",
        "startTimerDecisionAttributes": {"timerId": "retry-3", "startToFireTimeout": "10"},
    }


@pytest.mark.parametrize("heartbeat", [1.0, 60.0])
def test_the_executions_own_policy_decides_whatever_the_deciding_workers_settings(
    heartbeat: float,
) -> None:
    policy = RetryPolicy(max_attempts=2, retry_delay=7)
    history = [started(policy), *scheduled(1), failed()]
    assert next_decisions(history, heartbeat=heartbeat) == [
        {
            "decisionType": "StartTimer",
            "startTimerDecisionAttributes": {"timerId": "retry-1", "startToFireTimeout": "7"},
        }
    ]
    history += [*retried(1), *scheduled(2), failed()]
    assert kinds(next_decisions(history, heartbeat=heartbeat)) == ["FailWorkflowExecution"]


def test_an_input_without_a_policy_is_retried_by_the_defaults() -> None:
    history = [STARTED]
    for attempt in (1, 2):
        history += [*scheduled(attempt), failed(), *retried(attempt)]
    assert kinds(next_decisions(history)) == ["ScheduleActivityTask"]
    history += [*scheduled(3), failed()]
    assert kinds(next_decisions(history)) == ["FailWorkflowExecution"]  # 3 attempts, the default


def test_back_off_doubles_up_to_its_ceiling() -> None:
    policy = RetryPolicy(retry_delay=5, max_retry_delay=30)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


def test_the_old_name_decide_still_works_for_one_release_with_a_warning() -> None:
    import asteps.swf

    with pytest.warns(DeprecationWarning, match="next_decisions"):
        old = asteps.swf.decide
    assert old is next_decisions
