"""A step's options, checked: what ``runner.step(name, activities, **options)``
asks, before anything is read or run.

:func:`check_options` turns the options a caller gave (:class:`StepOptions`)
into an :class:`Asked`: every option checked, the runner's defaults filled
in, ready for the runner to read without looking anything up again. A
misspelt option is a ``TypeError`` naming the options there are. A runner
checks its defaults once, when it is built: a step given no option uses that
:class:`Asked` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._canvas import Activity
from ._names import validate_patterns
from ._results import check_keep
from ._retries import Retry, check_retry, check_time_limit
from ._step import STEP_OPTIONS, OnMissingResult, StepOptions


@dataclass(frozen=True, slots=True)
class Asked:
    """A step's options, checked, with the runner's defaults filled in."""

    force: bool = False
    deps: list[str] | None = None
    """The patterns of ``force_steps_if_executed`` (None when there are none)."""
    alternative: Activity | None = None
    """``activities_if_step_already_done``."""
    keep: Any = False
    on_missing: OnMissingResult = "run"
    rerun_on_new_version: bool = False
    reread: bool = False
    """A done step's marker body must be read (``keep_result`` or
    ``rerun_on_new_version``)."""
    exclusive: bool = False
    """Claimed before it runs (the option, or the runner's ``exclusive``)."""
    retry: Retry | None = None
    time_limit: float | None = None
    bubbles: bool = False
    """``bubbles_exception_on_failure``."""
    emit: bool = False
    """``emit_signal``."""


def check_options(
    options: StepOptions,
    activities: Activity,
    *,
    exclusive: bool,
    retry: Retry | None,
    time_limit: float | None,
) -> Asked:
    """Check ``options``; ``exclusive``, ``retry`` and ``time_limit`` are the
    runner's, for the options left at None. Raises ``TypeError`` or
    ``ValueError`` saying what to fix."""
    if options and not STEP_OPTIONS.issuperset(options):
        raise TypeError(_unknown_options(options))
    deps = options.get("force_steps_if_executed")
    patterns = validate_patterns(deps) if deps else None
    keep = options.get("keep_result", False)
    check_keep(keep)
    on_missing = _check_on_missing(options.get("on_missing_result", "run"))
    rerun = bool(options.get("rerun_on_new_version", False))
    asked_exclusive = options.get("exclusive")
    asked_retry = options.get("retry")
    asked_retry = check_retry(retry if asked_retry is None else asked_retry, activities)
    asked_time_limit = check_time_limit(options.get("time_limit"))
    return Asked(
        force=bool(options.get("force", False)),
        deps=patterns,
        alternative=options.get("activities_if_step_already_done"),
        keep=keep,
        on_missing=on_missing,
        rerun_on_new_version=rerun,
        reread=bool(keep) or rerun,
        exclusive=exclusive if asked_exclusive is None else bool(asked_exclusive),
        retry=asked_retry,
        time_limit=time_limit if asked_time_limit is None else asked_time_limit,
        bubbles=bool(options.get("bubbles_exception_on_failure", False)),
        emit=bool(options.get("emit_signal", False)),
    )


def _unknown_options(options: Mapping[str, Any]) -> str:
    unknown = sorted(set(options) - STEP_OPTIONS)
    return (
        f"unknown step option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
        f"the options are {', '.join(sorted(STEP_OPTIONS))}"
    )


def _check_on_missing(value: object) -> OnMissingResult:
    if value not in ("run", "none", "error"):
        raise ValueError(f"on_missing_result must be 'run', 'none' or 'error', got {value!r}")
    return value
