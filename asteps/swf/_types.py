"""What SWF knows asteps flows by: the type names, the task list, an
execution's input. The errors of the distributed commands are in
``asteps.errors`` (re-exported here).

One SWF workflow execution runs one asteps workflow: its ``workflowId`` is the
asteps workflow id, its ``runId`` the runner's ``run_id``, its input a
:class:`FlowInput` as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._runner import DEFAULT_PREFIX
from ..errors import FlowInputError, SwfError, SwfNotSetUp
from ._signals import SWF_INPUT_LIMIT

FLOW_TYPE = "asteps.flow"
"""The name of both the workflow type and the activity type."""
DEFAULT_VERSION = "1"
DEFAULT_TASK_LIST = "asteps"

__all__ = [
    "DEFAULT_TASK_LIST",
    "DEFAULT_VERSION",
    "FLOW_TYPE",
    "FlowInput",
    "FlowInputError",
    "SwfError",
    "SwfNotSetUp",
]

SWF_REASON_LIMIT = 256
"""SWF keeps at most 256 characters of a failure's ``reason``."""
SWF_DETAILS_LIMIT = 32_768
"""... and 32,768 of its ``details`` or of a result."""


_KEYS = ("flow", "params", "force", "skip", "reason", "prefix", "store")


@dataclass(frozen=True)
class FlowInput:
    """The input of one execution: which flow to run, and how.

    As JSON: ``{"flow", "params", "force", "skip", "reason", "prefix", "store"}``;
    ``store`` is a store URL, or null for the worker's own store.
    """

    flow: str
    params: Mapping[str, str] = field(default_factory=dict)
    force: Sequence[str] = ()
    skip: Sequence[str] = ()
    reason: str | None = None
    prefix: str = DEFAULT_PREFIX
    store: str | None = None

    def to_json(self) -> str:
        """The input SWF receives; :class:`FlowInputError` (never truncated) when
        it exceeds SWF's 32,768 characters."""
        text = json.dumps(
            {
                "flow": self.flow,
                "params": dict(self.params),
                "force": list(self.force),
                "skip": list(self.skip),
                "reason": self.reason,
                "prefix": self.prefix,
                "store": self.store,
            }
        )
        if len(text) > SWF_INPUT_LIMIT:
            raise FlowInputError(
                f"the execution input is {len(text):,} characters of JSON; SWF allows "
                f"{SWF_INPUT_LIMIT:,}: pass fewer or shorter --param values (a reference, "
                "such as an S3 key, instead of the data)"
            )
        return text

    @classmethod
    def from_json(cls, text: str | None) -> FlowInput:
        """Read an execution's input; :class:`FlowInputError` says what is wrong."""
        try:
            data = json.loads(text or "")
        except ValueError:
            raise FlowInputError(
                "the execution input is not JSON: start executions with `asteps swf submit`"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("flow"), str):
            raise FlowInputError(
                f"the execution input must be a JSON object with the keys {', '.join(_KEYS)}"
            )
        params = data.get("params") or {}
        force, skip = data.get("force") or [], data.get("skip") or []
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise FlowInputError("the input's params must be an object of strings")
        if not all(isinstance(p, str) for p in [*force, *skip]):
            raise FlowInputError("the input's force and skip must be lists of patterns")
        for key in ("reason", "store"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise FlowInputError(f"the input's {key} must be a string or null")
        prefix = data.get("prefix") or DEFAULT_PREFIX
        if not isinstance(prefix, str):
            raise FlowInputError("the input's prefix must be a string")
        return cls(
            flow=data["flow"],
            params=params,
            force=tuple(force),
            skip=tuple(skip),
            reason=data.get("reason"),
            prefix=prefix,
            store=data.get("store"),
        )


def failure_details(error: str, *, retryable: bool) -> str:
    """The ``details`` of an activity failure: the whole error, and whether a
    retry could help (a flow that cannot run its input never will)."""
    return clip(json.dumps({"retryable": retryable, "error": error}), SWF_DETAILS_LIMIT)


def read_failure_details(details: str | None) -> tuple[bool, str | None]:
    """Whether a failure allows a retry, and its whole error, from its ``details``
    (anything that is not asteps' JSON is a retryable error in words)."""
    try:
        data = json.loads(details or "")
    except ValueError:
        return True, details
    if not isinstance(data, dict):
        return True, details
    error = data.get("error")
    return data.get("retryable") is not False, error if isinstance(error, str) else details


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis saying it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
