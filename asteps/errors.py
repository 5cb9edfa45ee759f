"""Every exception a caller of asteps may want to catch.

All of them derive from :class:`AstepsError`, so ``except AstepsError`` catches
anything asteps raises on its own account. Messages name the mistake and say
what to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def describe(exc: BaseException) -> str:
    """An exception in one line, as asteps shows it: ``ValueError: bad input``."""
    return f"{type(exc).__name__}: {exc}"


class AstepsError(Exception):
    """Base class of every error raised by asteps itself."""


class InvalidName(AstepsError, ValueError):
    """A name asteps cannot use: a step name, a pattern, a workflow id or a
    prefix template.

    Raised at call time, before any I/O, so nothing has been written. Catch
    this one; the subclasses say which kind of name it was.
    """


class InvalidStepName(InvalidName):
    """A step name or a step pattern is malformed."""


class InvalidWorkflowId(InvalidStepName):
    """A workflow id is malformed (it would escape or corrupt a store's layout).

    It derives from :class:`InvalidStepName` for one release only, because
    asteps 0.1 raised that for workflow ids: ``except InvalidStepName`` keeps
    working. Catch :class:`InvalidName` (or this class) instead.
    """


class InvalidPrefix(InvalidStepName):
    """A prefix template, or the prefix it formats to, is malformed.

    It derives from :class:`InvalidStepName` for one release only, as
    :class:`InvalidWorkflowId` does. Catch :class:`InvalidName` instead.
    """


class StoreError(AstepsError):
    """The done-marker store could not list, write or remove markers.

    ``prefix`` names the location the store was working on, when known.
    """

    def __init__(self, message: str, *, prefix: str | None = None) -> None:
        super().__init__(message)
        self.prefix = prefix


class StoreUnreachable(StoreError):
    """The store could not be reached at all: no connection to its endpoint
    (refused, or not made in time), after the client's own retries. Unlike a
    refusal of one request (access denied, a missing bucket), it says that
    every request would wait through the same retries to fail the same way,
    so work of many requests stops at the first: an S3 unmark of many batches
    (:class:`UnmarkError`, this error in ``__cause__``), and ``asteps steps
    unmark`` over many workflows."""


MAX_REASONS_SHOWN = 5
"""An :class:`UnmarkError`'s message shows this many distinct reasons (the
most frequent first) and counts the others."""

MAX_REASON_CHARS = 200
"""An :class:`UnmarkError`'s message cuts each reason to this many characters
(an ellipsis says so): a store's reason may quote what it was told."""


class UnmarkError(StoreError):
    """Some markers could not be removed. Every batch of the removal was tried,
    so the markers not named in :attr:`not_removed` were removed; those named
    may still be there (the request that would have removed them failed). The
    first failed request's error, if one failed as a whole, is in ``__cause__``.

    Unless the store could not be reached: then the batches after the one
    that found it so were not tried (their markers are named too), and the
    :class:`StoreUnreachable` is in ``__cause__``.

    The message is bounded however many markers failed, and why: it shows the
    first ``MAX_REASONS_SHOWN`` reasons by count, each cut to
    ``MAX_REASON_CHARS`` characters, and the first five names.
    :attr:`not_removed` lists every name.
    """

    def __init__(self, message: str, not_removed: Sequence[str], *, prefix: str) -> None:
        super().__init__(message, prefix=prefix)
        self.not_removed = list(not_removed)

    @classmethod
    def of(
        cls, where: str, wanted: Sequence[str], failed: Mapping[str, str], *, prefix: str
    ) -> UnmarkError:
        """One error for every marker an unmark of ``wanted`` left in ``where``
        (``failed``: name -> why), the reasons grouped (the most frequent
        first, ``MAX_REASONS_SHOWN`` of them, each cut to ``MAX_REASON_CHARS``
        characters), the first names shown."""
        left = [name for name in wanted if name in failed]
        reasons: dict[str, int] = {}
        for why in failed.values():
            reasons[why] = reasons.get(why, 0) + 1
        ranked = sorted(reasons.items(), key=lambda item: -item[1])  # ties: first seen first
        said = "; ".join(f"{count:,} as {_cut(why)}" for why, count in ranked[:MAX_REASONS_SHOWN])
        if others := ranked[MAX_REASONS_SHOWN:]:
            markers = sum(count for _, count in others)
            said += (
                f"; and {len(others):,} other reason{'s' if len(others) > 1 else ''} "
                f"for {markers:,} marker(s)"
            )
        shown = ", ".join(repr(name) for name in left[:5])
        if len(left) > 5:
            shown += f" and {len(left) - 5:,} more (.not_removed lists them all)"
        if len(left) < len(wanted):
            what = f"{len(left):,} of {len(wanted):,} marker(s) in {where} were not removed "
            what += "(the others were)"
        else:
            what = f"none of the {len(wanted):,} marker(s) in {where} is known to be removed"
        return cls(f"{what}: {said}; not removed: {shown}", left, prefix=prefix)


def _cut(reason: str) -> str:
    """``reason`` cut to ``MAX_REASON_CHARS`` characters, an ellipsis saying so."""
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 1] + "…"


class MarkerBodyError(StoreError):
    """A marker's body is not the JSON object asteps and simpleflow write."""


class MarkDoneError(StoreError):
    """A step's work completed, but its done marker could not be written.

    The step's result is in :attr:`result`, the store's error in ``__cause__``.
    The step is *not* marked done, so it runs again next time (at-least-once).
    """

    def __init__(self, step: str, result: Any, *, prefix: str, cause: BaseException) -> None:
        super().__init__(
            f"step {step!r} completed but its done marker under {prefix!r} could not be "
            f"written ({describe(cause)}); the result is in .result and the "
            "step will run again next time unless you mark it done yourself",
            prefix=prefix,
        )
        self.step = step
        self.result = result
        self.__cause__ = cause


class ResultNotKept(AstepsError):
    """A step with ``keep_result`` completed, but its result cannot be kept (not
    JSON-able, or over ``max_result_bytes``), so the step is *not* marked done.

    The result is in :attr:`result`; the step runs again next time.
    """

    def __init__(self, step: str, result: Any, why: str) -> None:
        super().__init__(
            f"step {step!r} completed but was not marked done: {why}; the result is in "
            ".result and the step will run again next time"
        )
        self.step = step
        self.result = result


class ClaimLost(AstepsError):
    """An exclusive step's claim was taken over by another runner while the step
    ran (its renewal was refused, or could not be made before the lease could
    expire): the step's activities were cancelled and it was *not* marked done,
    so that the other runner's run stands."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"step {step!r} lost its claim and was not marked done: {why}")
        self.step = step


class StepTimeout(AstepsError, TimeoutError):
    """An attempt of a step's activities ran past the step's ``time_limit``: it
    was cancelled, and counts as a failed attempt (retried when the step's
    ``retry`` allows). :attr:`attempt` is its number, from 1."""

    def __init__(self, step: str, attempt: int, time_limit: float) -> None:
        super().__init__(
            f"step {step!r} attempt {attempt} ran past its time limit of {time_limit:g} s "
            "and was cancelled"
        )
        self.step = step
        self.attempt = attempt
        self.time_limit = time_limit


class ClaimsNotSupported(AstepsError, TypeError):
    """``exclusive=True`` on a store that cannot hold claims."""


class MarkersNotReadable(AstepsError, TypeError):
    """``keep_result=`` or ``rerun_on_new_version=True`` on a store that cannot
    read marker bodies (it has no ``read_marker``)."""


class ResultMissing(AstepsError):
    """A done step's kept result is missing or invalid, and the step was asked
    to fail in that case (``on_missing_result="error"``)."""


class SignalError(AstepsError):
    """A signal could not be published, sent or received as asked."""


class SignalDeliveryError(SignalError):
    """Signals could not be delivered to SWF; :attr:`undelivered` lists each
    (execution, signal, reason). Raised when an ``SwfSignalBridge`` closes."""

    def __init__(self, undelivered: Sequence[Any]) -> None:
        shown = "; ".join(
            f"{u.signal.name} -> {u.execution[0]}: {u.reason}" for u in undelivered[:5]
        )
        more = f" (and {len(undelivered) - 5} more)" if len(undelivered) > 5 else ""
        super().__init__(f"{len(undelivered)} signal(s) not delivered to SWF: {shown}{more}")
        self.undelivered = list(undelivered)


class SignalTimeout(SignalError, TimeoutError):
    """No signal of the awaited name arrived within the timeout."""


class SwfError(AstepsError):
    """SWF could not be reached or used: no connection, no credentials, access
    denied. The CLI exits 3 on it, as for a store."""


class SwfNotSetUp(SwfError):
    """The domain or the types asteps needs are not registered (run
    ``asteps swf init``); the CLI exits 2 on it."""


class FlowInputError(AstepsError, ValueError):
    """An SWF execution's input is not a flow input asteps can run."""


class FlowError(AstepsError):
    """A flow given to the CLI cannot be loaded or has the wrong shape."""
