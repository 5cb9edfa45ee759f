"""The SWF bridge: bus signals out to SWF executions, SWF signals in to the bus.

- :class:`SwfSignalBridge` sends each bus signal its patterns cover (by
  default ``step.*``) to one or several SWF workflow executions with
  SignalWorkflowExecution, so a simpleflow workflow waiting on
  ``step.<name>`` wakes up when an asteps service completes or skips it.
- :class:`SwfSignalListener` polls an execution's history and publishes each
  ``WorkflowExecutionSignaled`` event on the bus, so ``runner.wait_signal``
  sees SWF-side signals.
- :class:`EchoGuard`, shared by a bridge and a listener on one execution,
  keeps the listener from publishing again what the bridge sent.

Distributed batch reruns (``asteps swf init | submit | worker | status``):

- :class:`SwfWorker` polls a task list and runs one flow for its executions
  (the decider, :func:`next_decisions`, is a pure function of a history);
- :func:`submit` starts one execution per workflow id, its input built and
  checked by :func:`prepare` (with the executions' :class:`RetryPolicy`), at
  most ``max_open`` (default :data:`DEFAULT_MAX_OPEN`, under SWF's quota
  :data:`SWF_OPEN_LIMIT`) open at once; :func:`spelling_warning` says when
  workers elsewhere may not find the flow as spelled; :func:`swf_status`
  counts the executions by state;
- :func:`init_domain` registers the domain and the ``asteps.flow`` types,
  through a client from :func:`open_swf_client`.

The ``asteps swf`` command is built on these names only.

The modules, by role: ``_client`` (the SWF client: opening, checks, errors),
``_signals`` (a signal's SWF input and source), ``_echo`` (the echo guard),
``bridge`` and ``listener``; ``_types`` (type names, an execution's input),
``_decider``, ``_activity`` (one attempt), ``worker``, ``_submit``, ``status``,
``_registration``. Import from here (or from ``asteps``).

Why it works this way:

- Order: one sender per execution sends that execution's signals one at a
  time, in publication order. The bridge reads the bus with a blocking
  subscription, so it never drops a signal; a publisher waits instead.
- Nothing is dropped silently: a signal that cannot be delivered (refused
  because too large, unknown execution, still failing after botocore's
  retries, or still pending when the drain time on exit runs out) is logged at
  ERROR as it happens, kept in :attr:`SwfSignalBridge.undelivered`, and raised
  as :class:`SignalDeliveryError` when the bridge closes.
- No echo, when asked: with one :class:`EchoGuard` passed to both, the
  listener recognises the signals the bridge sent (same domain, workflow id,
  name and input) and does not publish them again. Whatever the guard, the
  bridge never sends a signal back to the execution it came from.
- One lifecycle: each is opened once with ``async with``; opening it again,
  or after it closed, raises :class:`SignalError`; closing twice does nothing.
  Closing is shielded from cancellation and hands the block's exception to
  the task group and the client, so a cancelled host leaks no client.
"""

import warnings
from typing import Any

from ..errors import SignalDeliveryError, SignalError
from ._activity import FlowReport
from ._client import Execution, open_swf_client
from ._decider import SwfDecision, next_decisions
from ._echo import EchoGuard
from ._registration import DEFAULT_RETENTION_DAYS, init_domain
from ._signals import SWF_INPUT_LIMIT, execution_source, swf_input
from ._submit import Outcome, SubmitSummary, prepare, spelling_warning, submit
from ._types import (
    DEFAULT_TASK_LIST,
    DEFAULT_VERSION,
    FLOW_TYPE,
    MAX_ATTEMPTS,
    MAX_DELAY,
    FlowInput,
    FlowInputError,
    RetryPolicy,
    SwfError,
    SwfNotSetUp,
)
from ._window import DEFAULT_MAX_OPEN, SWF_OPEN_LIMIT
from .bridge import SwfSignalBridge, Undelivered
from .listener import SwfSignalListener
from .status import SwfStatus, swf_status
from .worker import SwfWorker, WorkerStats

__all__ = [
    "DEFAULT_MAX_OPEN",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_TASK_LIST",
    "DEFAULT_VERSION",
    "FLOW_TYPE",
    "MAX_ATTEMPTS",
    "MAX_DELAY",
    "SWF_INPUT_LIMIT",
    "SWF_OPEN_LIMIT",
    "EchoGuard",
    "Execution",
    "FlowInput",
    "FlowInputError",
    "FlowReport",
    "Outcome",
    "RetryPolicy",
    "SignalDeliveryError",
    "SignalError",
    "SubmitSummary",
    "SwfDecision",
    "SwfError",
    "SwfNotSetUp",
    "SwfSignalBridge",
    "SwfSignalListener",
    "SwfStatus",
    "SwfWorker",
    "Undelivered",
    "WorkerStats",
    "execution_source",
    "init_domain",
    "next_decisions",
    "open_swf_client",
    "prepare",
    "spelling_warning",
    "submit",
    "swf_input",
    "swf_status",
]


def __getattr__(name: str) -> Any:
    # asteps 0.1 called next_decisions ``decide``, the name of asteps.decide
    # (a step's decision): kept one release, with a warning.
    if name == "decide":
        warnings.warn(
            "asteps.swf.decide is now asteps.swf.next_decisions (asteps.decide decides "
            "a step); the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return next_decisions
    raise AttributeError(f"module 'asteps.swf' has no attribute {name!r}")
