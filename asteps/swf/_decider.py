"""The decider: from an execution's history to its next decisions. Pure: no I/O.

An asteps execution is one activity (the flow for one workflow id), retried:

- started: schedule the activity (attempt 1);
- ``ActivityTaskCompleted``: complete the execution with the activity's result;
- ``ActivityTaskFailed`` / ``ActivityTaskTimedOut``: start a back-off timer,
  then, on ``TimerFired``, schedule the next attempt; after ``max_attempts``
  in all, or at once for a failure marked not retryable, fail the execution
  with the failure's reason;
- ``ActivityTaskFailed`` marked drained (a worker stopped and handed the
  attempt back): schedule the next attempt at once, and do not count it;
- ``ScheduleActivityTaskFailed`` because SWF throttled it
  (``ACTIVITY_CREATION_RATE_EXCEEDED``): schedule it again after a timer of
  1, 2, 4... up to 60 seconds; any other cause (the type not registered, or
  its version deprecated, say) fails the execution, saying what to do;
- a cancellation request: cancel the activity if it runs, else the execution;
  but once the activity completed (the request came too late to stop the
  flow, even in the decision task that completes it), complete the execution
  with its result: SWF leaves the answer to a cancellation request to the
  decider, and work that finished is not reported as cancelled;
- anything else (a signal, say): nothing to decide.

Why stateless: every decision is made again from the whole history, so any
worker can take any decision task, and a worker that dies between two
decisions loses nothing. For the same reason the retry policy is the
execution's own, read from its input (:class:`RetryPolicy`): whichever worker
decides, the execution is retried alike. The deciding worker sets only the
heartbeat timeout and the activity type's version.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ._types import (
    DEFAULT_VERSION,
    FLOW_TYPE,
    SWF_DETAILS_LIMIT,
    SWF_REASON_LIMIT,
    FlowInput,
    FlowInputError,
    RetryPolicy,
    clip,
    json_within,
    read_failure_details,
)

SwfDecision = dict[str, Any]
"""One decision of RespondDecisionTaskCompleted, as boto3 takes it (a dict)."""

# An execution's history ends with one of these: nothing is decided after
# them, and no signal can follow (the listener stops polling there).
CLOSING_EVENTS = frozenset(
    {
        "WorkflowExecutionCompleted",
        "WorkflowExecutionFailed",
        "WorkflowExecutionTimedOut",
        "WorkflowExecutionCanceled",
        "WorkflowExecutionTerminated",
        "WorkflowExecutionContinuedAsNew",
    }
)
# The events that move an execution on; the latest one decides.
_OUTCOMES = frozenset(
    {
        "ActivityTaskScheduled",
        "ActivityTaskCompleted",
        "ActivityTaskFailed",
        "ActivityTaskTimedOut",
        "ActivityTaskCanceled",
        "ScheduleActivityTaskFailed",
        "TimerStarted",
        "TimerFired",
        "TimerCanceled",
        "StartTimerFailed",
    }
)


_THROTTLED = frozenset({"ACTIVITY_CREATION_RATE_EXCEEDED"})
"""Causes of ScheduleActivityTaskFailed that pass: SWF's rate of new activity
tasks, which a large batch can reach. Not the execution's fault."""
_MAX_THROTTLED_WAIT = 60
_DEPRECATED = frozenset({"ACTIVITY_TYPE_DEPRECATED"})
"""Causes of ScheduleActivityTaskFailed that registering cannot mend: the
type's version is deprecated, and registering it again is refused."""


def heartbeat_timeout(heartbeat: float) -> int:
    """SWF's heartbeat timeout for a heartbeat period: three periods, in whole seconds."""
    return max(1, math.ceil(3 * heartbeat))


@dataclass
class _Reading:
    """What a history says, read once from its first event to its last."""

    input: str | None = None
    task_list: str | None = None
    scheduled: int = 0
    drained: int = 0
    throttled: int = 0
    activity_open: bool = False
    activity_id: str | None = None
    timer_open: str | None = None
    cancel_requested: bool = False
    cancel_asked_of_activity: bool = False
    closed: bool = False
    last: Mapping[str, Any] | None = None

    @property
    def attempts(self) -> int:
        """Attempts that count: those scheduled, less those handed back by a drain."""
        return self.scheduled - self.drained

    def policy(self) -> RetryPolicy:
        """The execution's retry policy, from its input; the defaults for an
        input that has none (an older submit) or that no worker can run (its
        attempt fails at once, not retried)."""
        try:
            return FlowInput.from_json(self.input).retry
        except FlowInputError:
            return RetryPolicy()


def next_decisions(
    events: Iterable[Mapping[str, Any]],
    *,
    heartbeat: float = 10.0,
    activity_version: str = DEFAULT_VERSION,
) -> list[SwfDecision]:
    """The decisions for an execution whose history is ``events``, oldest first
    (as PollForDecisionTask returns them, every page joined).

    Attempts are retried by the execution's own :class:`RetryPolicy` (in its
    input); an attempt is scheduled with a heartbeat timeout of three
    ``heartbeat`` periods, as activity type version ``activity_version``.
    """
    h = _read(events)
    if h.closed:
        return []
    last = h.last
    if last is not None and last["eventType"] == "ActivityTaskCompleted":
        # Before a cancellation request: one that came once the flow was done
        # (or that the flow finished before heeding) is too late to stop it.
        return [_close("CompleteWorkflowExecution", result=_attributes(last).get("result"))]
    if h.cancel_requested:
        return _cancel(h)
    schedule = partial(_schedule, h, heartbeat, activity_version)
    if last is None:
        return [schedule()]
    kind = last["eventType"]
    attrs = _attributes(last)
    if kind == "ActivityTaskFailed" and read_failure_details(attrs.get("details"))[1]:
        return [schedule()]  # handed back by a stopping worker: at once, not counted
    if kind in ("ActivityTaskFailed", "ActivityTaskTimedOut"):
        return _after_failure(h, h.policy(), kind, attrs)
    if kind in ("TimerFired", "StartTimerFailed", "TimerCanceled"):
        return [schedule()]
    if kind == "ScheduleActivityTaskFailed":
        cause = attrs.get("cause", "unknown cause")
        if cause in _THROTTLED:
            return [_throttled(h)]
        activity = attrs.get("activityType", {})
        version = activity.get("version")
        if cause in _DEPRECATED:
            # `swf init` registers the version asked, which SWF keeps deprecated.
            advice = (
                "run `asteps swf init`, `swf submit` and `swf worker` with a new "
                f"--type-version, or undeprecate version {version} of the type"
            )
        else:
            advice = "register it with `asteps swf init`"
        return [
            _fail(
                f"cannot schedule activity {activity.get('name')} version "
                f"{version}: {cause}; {advice}",
                None,
            )
        ]
    if kind == "ActivityTaskCanceled":
        return [_close("CancelWorkflowExecution", details=attrs.get("details"))]
    return []  # an activity or a timer is running: wait for it


def _read(events: Iterable[Mapping[str, Any]]) -> _Reading:
    h = _Reading()
    for event in events:
        kind = event["eventType"]
        attrs = _attributes(event)
        if kind == "WorkflowExecutionStarted":
            h.input = attrs.get("input")
            h.task_list = attrs.get("taskList", {}).get("name")
        elif kind in CLOSING_EVENTS:
            h.closed = True
        elif kind == "WorkflowExecutionCancelRequested":
            h.cancel_requested = True
        elif kind == "ActivityTaskCancelRequested":
            h.cancel_asked_of_activity = True
        if kind == "ActivityTaskScheduled":
            h.scheduled += 1
            h.activity_open, h.activity_id = True, attrs.get("activityId")
        elif kind.startswith("ActivityTask") and kind in _OUTCOMES:
            h.activity_open = False
        elif kind == "TimerStarted":
            h.timer_open = attrs.get("timerId")
        elif kind in ("TimerFired", "TimerCanceled"):
            h.timer_open = None
        if kind == "ActivityTaskFailed" and read_failure_details(attrs.get("details"))[1]:
            h.drained += 1
        if kind == "ScheduleActivityTaskFailed" and attrs.get("cause") in _THROTTLED:
            h.throttled += 1
        if kind in _OUTCOMES:
            h.last = event
    return h


def _attributes(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """An event's attributes: ``activityTaskFailedEventAttributes`` and so on."""
    kind = str(event["eventType"])
    found = event.get(kind[0].lower() + kind[1:] + "EventAttributes")
    return found if isinstance(found, Mapping) else {}


def _schedule(h: _Reading, heartbeat: float, activity_version: str) -> SwfDecision:
    attributes: dict[str, Any] = {
        "activityType": {"name": FLOW_TYPE, "version": activity_version},
        # One id per activity scheduled: SWF refuses an id in use, moto even a
        # closed one (drained attempts included, though they do not count).
        "activityId": f"{FLOW_TYPE}-{h.scheduled + 1}",
        "heartbeatTimeout": str(heartbeat_timeout(heartbeat)),
        # Only heartbeats bound an attempt: a flow may rightly run for hours,
        # and queued work may wait for a free worker as long as it takes.
        "scheduleToStartTimeout": "NONE",
        "scheduleToCloseTimeout": "NONE",
        "startToCloseTimeout": "NONE",
    }
    if h.input is not None:
        attributes["input"] = h.input
    if h.task_list:
        attributes["taskList"] = {"name": h.task_list}
    return {
        "decisionType": "ScheduleActivityTask",
        "scheduleActivityTaskDecisionAttributes": attributes,
    }


def _after_failure(
    h: _Reading, policy: RetryPolicy, kind: str, attrs: Mapping[str, Any]
) -> list[SwfDecision]:
    if kind == "ActivityTaskTimedOut":
        reason, retryable, error = f"timed out: {attrs.get('timeoutType', 'unknown')}", True, None
    else:
        reason = attrs.get("reason") or "the activity failed"
        retryable, _, error = read_failure_details(attrs.get("details"))
    if not retryable or h.attempts >= policy.max_attempts:
        details = {"attempts": h.attempts, "retryable": retryable, "error": error or reason}
        # The error is cut, not the JSON, until the JSON sent fits.
        return [_fail(reason, json_within(details, "error", SWF_DETAILS_LIMIT))]
    timer = {
        "timerId": f"retry-{h.scheduled}",
        "startToFireTimeout": str(policy.delay(h.attempts)),
    }
    return [{"decisionType": "StartTimer", "startTimerDecisionAttributes": timer}]


def _throttled(h: _Reading) -> SwfDecision:
    """A timer, then the same attempt scheduled again (on ``TimerFired``): SWF
    refused to create the activity task for now; no attempt was used."""
    wait = min(2 ** min(h.throttled - 1, 6), _MAX_THROTTLED_WAIT)
    timer = {"timerId": f"throttled-{h.throttled}", "startToFireTimeout": str(wait)}
    return {"decisionType": "StartTimer", "startTimerDecisionAttributes": timer}


def _fail(reason: str, details: str | None) -> SwfDecision:
    return _close(
        "FailWorkflowExecution",
        reason=clip(reason, SWF_REASON_LIMIT),
        details=details,
    )


def _close(kind: str, **attributes: Any) -> SwfDecision:
    key = kind[0].lower() + kind[1:] + "DecisionAttributes"
    return {"decisionType": kind, key: {k: v for k, v in attributes.items() if v is not None}}


def _cancel(h: _Reading) -> list[SwfDecision]:
    if h.activity_open:
        if h.cancel_asked_of_activity or h.activity_id is None:
            return []  # asked already: its heartbeat will say so
        return [
            {
                "decisionType": "RequestCancelActivityTask",
                "requestCancelActivityTaskDecisionAttributes": {"activityId": h.activity_id},
            }
        ]
    decisions: list[SwfDecision] = []
    if h.timer_open is not None:
        decisions.append(
            {
                "decisionType": "CancelTimer",
                "cancelTimerDecisionAttributes": {"timerId": h.timer_open},
            }
        )
    decisions.append(_close("CancelWorkflowExecution"))
    return decisions
