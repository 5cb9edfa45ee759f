"""What SWF knows asteps flows by: the type names, the task list, an
execution's input. The errors of the distributed commands are in
``asteps.errors`` (re-exported here).

One SWF workflow execution runs one asteps workflow: its ``workflowId`` is the
asteps workflow id, its ``runId`` the runner's ``run_id``, its input a
:class:`FlowInput` as JSON.

Why the input is a strict model: whoever may start an execution on the domain
writes it, and must not control the worker. It is parsed once, at the edge,
by pydantic with ``extra="forbid"`` and strict types (a string is never a
list of patterns, a number never a string), every size bounded; a field that
does not fit fails the execution at once, naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from .._json import JsonBoundsError, check_bounds
from .._names import (
    DEFAULT_PREFIX,
    MAX_NAME_LENGTH,
    check_prefix_per_workflow,
    shown,
    validate_pattern,
)
from ..errors import FlowInputError, InvalidName, SwfError, SwfNotSetUp
from ._signals import SWF_INPUT_LIMIT

FLOW_TYPE = "asteps.flow"
"""The name of both the workflow type and the activity type."""
DEFAULT_VERSION = "1"
"""The version of the ``asteps.flow`` types, unless ``--type-version`` says another."""
DEFAULT_TASK_LIST = "asteps"
"""The task list executions are started on and workers poll, unless told another."""

__all__ = [
    "DEFAULT_TASK_LIST",
    "DEFAULT_VERSION",
    "FLOW_TYPE",
    "FlowInput",
    "FlowInputError",
    "RetryPolicy",
    "SwfError",
    "SwfNotSetUp",
]

SWF_REASON_LIMIT = 256
"""SWF keeps at most 256 characters of a failure's ``reason``."""
SWF_DETAILS_LIMIT = 32_768
"""... and 32,768 of its ``details`` or of a result."""
_MAX_DETAILS_BYTES = 4 * SWF_DETAILS_LIMIT
"""The most UTF-8 details within SWF's limit can take (4 bytes a character)."""
_SHOWN = 100
"""How much of unreadable details the error shows."""

MAX_DELAY = 86_400.0
"""The longest back-off asteps accepts, in seconds: a day."""
MAX_ATTEMPTS = 100
"""The most attempts a :class:`RetryPolicy` allows an execution."""

_Pattern = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH)]
_Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)

# Where each field of the input comes from on `asteps swf submit`'s command line.
_OPTION = {
    "flow": "FLOW",
    "params": "--param values",
    "force": "--force patterns",
    "skip": "--skip patterns",
    "reason": "--reason",
    "prefix": "--prefix",
    "store": "--store",
    "retry": "--max-attempts/--retry-delay",
}


class RetryPolicy(BaseModel):
    """How the attempts of one execution are retried; ``swf submit`` records it
    in the execution's input, and every decider follows it.

    After the n-th failed attempt the next one waits ``retry_delay * 2**(n-1)``
    seconds, at most ``max_retry_delay``; after ``max_attempts`` in all the
    execution fails. An attempt handed back by a worker that stopped (a
    drain) is not counted and waits no back-off.
    """

    model_config = _STRICT

    max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS)
    retry_delay: float = Field(default=5.0, ge=0, le=MAX_DELAY, allow_inf_nan=False)
    max_retry_delay: float = Field(default=300.0, ge=0, le=MAX_DELAY, allow_inf_nan=False)

    def delay(self, failed_attempts: int) -> int:
        """Seconds to wait before the attempt after ``failed_attempts`` failures."""
        seconds = self.retry_delay * 2.0 ** min(max(failed_attempts - 1, 0), 64)
        return math.ceil(min(seconds, self.max_retry_delay))


class FlowInput(BaseModel):
    """The input of one execution: which flow to run, and how.

    As JSON: ``{"flow", "params", "force", "skip", "reason", "prefix",
    "store", "retry"}``; ``store`` is null for the worker's own store, or a
    store URL the worker's operator allowed (``--allow-store``); ``retry`` is
    the execution's :class:`RetryPolicy` (the defaults when absent, as in the
    input of an older ``submit``). Build it with keywords; :func:`from_json`
    reads one from SWF.
    """

    model_config = _STRICT

    flow: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    # Values are bounded by the input's size, which from_json and to_json check.
    params: dict[_Key, str] = Field(default_factory=dict, max_length=256)
    force: tuple[_Pattern, ...] = Field(default=(), max_length=1000)
    skip: tuple[_Pattern, ...] = Field(default=(), max_length=1000)
    reason: Annotated[str, StringConstraints(max_length=4096)] | None = None
    prefix: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = DEFAULT_PREFIX
    store: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    retry: RetryPolicy = RetryPolicy()

    @field_validator("force", "skip")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            validate_pattern(pattern)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # A worker runs many workflows: each needs its own prefix.
        check_prefix_per_workflow(value)
        return value

    def to_json(self) -> str:
        """The input SWF receives; :class:`FlowInputError` (never truncated) when
        it exceeds SWF's 32,768 characters, naming the largest part."""
        data = self.model_dump(mode="json")
        # SWF counts characters: é is one, not the six of "\u00e9".
        text = json.dumps(data, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise FlowInputError(
                "the execution input holds a character that is not UTF-8 (an undecodable "
                "byte of the command line): pass text"
            ) from None
        if len(text) > SWF_INPUT_LIMIT:
            sizes = {k: len(json.dumps(v, ensure_ascii=False)) for k, v in data.items()}
            largest = max(sizes, key=lambda k: sizes[k])
            raise FlowInputError(
                f"the execution input is {len(text):,} characters of JSON; SWF allows "
                f"{SWF_INPUT_LIMIT:,}, and {_OPTION[largest]} take {sizes[largest]:,} of "
                "them: shorten it (pass a reference, such as an S3 key, instead of data)"
            )
        return text

    @classmethod
    def from_json(cls, text: str | None) -> FlowInput:
        """Read an execution's input; :class:`FlowInputError` names what is wrong."""
        if text is None or not text.strip():
            raise FlowInputError(
                "the execution has no input: start executions with `asteps swf submit`"
            )
        if len(text) > SWF_INPUT_LIMIT:
            raise FlowInputError(
                f"the execution input is {len(text):,} characters; SWF allows {SWF_INPUT_LIMIT:,}"
            )
        try:
            spec = cls.model_validate_json(text)
        except ValidationError as exc:
            raise FlowInputError(explain_input(exc)) from None
        # pydantic keeps the last of a key given twice, another parser may keep
        # the first: such an input means two things, and is refused. Parsed
        # again only once valid, so its nesting is already bounded.
        json.loads(text, object_pairs_hook=_refuse_repeated_keys)
        return spec


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise FlowInputError(
                f"the execution input gives the key {shown(key, 60)} twice, which JSON "
                "parsers read differently: give each key once; start executions with "
                "`asteps swf submit`"
            )
        found[key] = value
    return found


def explain_input(exc: ValidationError, *, options: bool = False) -> str:
    """A pydantic error as one sentence: the fields (with ``options``, the
    ``swf submit`` options they come from), what is wrong, the input cut short."""
    problems = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "the input"
        if options and error["loc"]:
            where = _OPTION.get(str(error["loc"][0]), where)
        if error["type"] == "json_invalid":
            return "the execution input is not JSON: start executions with `asteps swf submit`"
        if error["type"] == "model_type":
            return (
                "the execution input must be a JSON object: start executions with "
                "`asteps swf submit`"
            )
        message = error["msg"]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, InvalidName | ValueError) and str(cause):
            message = str(cause)
        elif error["type"] != "missing":
            message += f", got {shown(error.get('input'), 60)}"
        problems.append(f"{where}: {message}")
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    if options:
        return "; ".join(problems) + more
    return (
        "the execution input does not fit asteps' flow input: "
        + "; ".join(problems)
        + more
        + "; start executions with `asteps swf submit`"
    )


def failure_details(error: str, *, retryable: bool, drained: bool = False) -> str:
    """The ``details`` of an activity failure: the whole error, whether a retry
    could help (a flow that cannot run its input never will), and whether the
    worker handed the attempt back as it stopped (a drain: no attempt used)."""
    # The error is cut, not the JSON: cut JSON would read as a retryable failure.
    data: dict[str, Any] = {"retryable": retryable, "error": clip(error, SWF_DETAILS_LIMIT // 8)}
    if drained:
        data["drained"] = True
    return json_within(data, "error", SWF_DETAILS_LIMIT)


def read_failure_details(details: str | None) -> tuple[bool, bool, str | None]:
    """Whether a failure allows a retry, whether it was a drain, and its whole
    error, from its ``details`` (anything that is not asteps' JSON is a
    retryable error in words).

    Whoever may poll the task list may fail an attempt with any details: those
    over ``MAX_DEPTH`` levels deep (20,000 ``[`` fit in SWF's limit, and make
    ``json.loads`` raise ``RecursionError``) are not parsed but read as a
    retryable error that says why, with the start of the text.
    """
    if details is None:
        return True, False, None
    try:
        check_bounds(details.encode("utf-8", "surrogatepass"), max_bytes=_MAX_DETAILS_BYTES)
    except JsonBoundsError as exc:
        return True, False, f"unreadable failure details ({exc}): {clip(details, _SHOWN)}"
    try:
        data = json.loads(details)
    except ValueError:
        return True, False, details
    if not isinstance(data, dict):
        return True, False, details
    error = data.get("error")
    return (
        data.get("retryable") is not False,
        data.get("drained") is True,
        error if isinstance(error, str) else details,
    )


def json_within(data: dict[str, Any], key: str, limit: int) -> str:
    """``data`` as JSON of at most ``limit`` characters, its string ``data[key]``
    cut short (as :func:`clip` cuts) as little as it takes (the other values
    must fit).

    The bound holds on the text sent, not on the string: ``json.dumps`` writes
    ASCII, 12 characters for one astral character (``"😀"`` is two ``\\u``
    escapes), so 4,096 characters of an error can take 49,000 of JSON. ASCII
    is as long however it is counted (characters, UTF-16 units or bytes).
    """
    text = json.dumps(data)
    if len(text) <= limit:
        return text
    value = str(data[key])

    def cut(keep: int) -> str:
        return json.dumps({**data, key: clip(value, keep)})

    # The longest cut that fits: ``keep`` characters fit, ``too_many`` do not.
    keep, too_many = 1, len(value)
    while too_many - keep > 1:
        middle = (keep + too_many) // 2
        if len(cut(middle)) <= limit:
            keep = middle
        else:
            too_many = middle
    return cut(keep)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis saying it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
