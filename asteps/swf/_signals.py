"""How a bus signal looks in SWF: its ``input``, within SWF's limits, and the
``source`` of a signal that came from an execution."""

from __future__ import annotations

import json
import logging
from typing import Any

from .._bus import MAX_SIGNAL_NAME, Signal
from .._json import JsonBoundsError, check_bounds
from ..errors import SignalError

logger = logging.getLogger("asteps.swf")

SWF_INPUT_LIMIT = 32_768
"""SignalWorkflowExecution's ``input`` is at most 32,768 characters."""
# Its signalName is at most 256 characters: the bus's own limit, MAX_SIGNAL_NAME.

_MAX_INPUT_BYTES = 4 * SWF_INPUT_LIMIT
"""The most UTF-8 an input within SWF's limit can take (4 bytes a character)."""

_NAME_SHOWN = 100
"""How much of a signal's name a warning shows."""


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


def decode_input(raw: str | None, name: str = "") -> Any:
    """A signal's payload from its SWF ``input``: JSON when it is JSON, else the text.

    The input comes from whoever may signal the execution: one nested deeper
    than ``MAX_DEPTH`` (20,000 ``[`` fit in SWF's limit, and make ``json.loads``
    raise ``RecursionError``) is not decoded but kept as its text, with a
    warning naming the signal ``name``. Never raises.
    """
    if raw is None:
        return None
    try:
        check_bounds(raw.encode("utf-8", "surrogatepass"), max_bytes=_MAX_INPUT_BYTES)
    except JsonBoundsError as exc:
        logger.warning(
            "SWF signal %r: its input is published as text, not decoded from JSON: %s",
            name[:_NAME_SHOWN],
            exc,
        )
        return raw
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
