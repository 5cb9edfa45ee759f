"""How a bus signal looks in SWF: its ``input``, within SWF's limits, and the
``source`` of a signal that came from an execution."""

from __future__ import annotations

import json
from typing import Any

from .._bus import MAX_SIGNAL_NAME, Signal
from ..errors import SignalError

SWF_INPUT_LIMIT = 32_768
"""SignalWorkflowExecution's ``input`` is at most 32,768 characters."""
# Its signalName is at most 256 characters: the bus's own limit, MAX_SIGNAL_NAME.


def swf_input(name: str, payload: Any) -> str:
    """The ``input`` SWF receives for a signal: its payload as JSON.

    Raises :class:`SignalError` (never truncates) when the name or the input
    exceeds SWF's limits, or the payload is not JSON-serialisable.
    """
    if len(name) > MAX_SIGNAL_NAME:
        raise SignalError(
            f"signal name {name[:40]!r}... is {len(name)} characters; SWF allows "
            f"{MAX_SIGNAL_NAME}: use a shorter step name"
        )
    try:
        text = json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise SignalError(f"payload of signal {name!r} is not JSON-serialisable: {exc}") from None
    if len(text) > SWF_INPUT_LIMIT:
        raise SignalError(
            f"payload of signal {name!r} is {len(text)} characters of JSON; SWF allows "
            f"{SWF_INPUT_LIMIT}: send a reference (an S3 key, say) instead of the data"
        )
    return text


def decode_input(raw: str | None) -> Any:
    """A signal's payload from its SWF ``input``: JSON when it is JSON, else the text."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def execution_source(domain: str, workflow_id: str, run_id: str | None) -> str:
    """The ``Signal.source`` of a signal that came from this SWF execution."""
    return f"swf:{domain}/{workflow_id}/{run_id or ''}"


def comes_from(signal: Signal, domain: str, workflow_id: str) -> bool:
    """True when ``signal`` came from an execution of ``workflow_id`` (any run)."""
    return signal.source is not None and signal.source.startswith(f"swf:{domain}/{workflow_id}/")
