"""The step vocabulary: Step (what to run), StepOptions (how), StepOutcome
(what happened) and Marker (the ``log.step`` record of each phase). The
Activity type lives with what runs activities (``_canvas``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._canvas import Activity, close_unawaited
from ._names import validate_name, validate_patterns
from ._retries import Retry, check_retry, check_time_limit

OnMissingResult = Literal["run", "none", "error"]
"""What a done step whose kept result is missing or invalid does (``on_missing_result``)."""

Status = Literal["completed", "skipped", "failed", "planned"]
"""``planned`` appears only in dry runs, where nothing is executed."""


class StepOptions(TypedDict, total=False):
    """The options of a step, shared by :class:`Step`, :meth:`Runner.step
    <asteps.Runner.step>` and (through Step) :meth:`Runner.submit
    <asteps.Runner.submit>`: written once, here."""

    force: bool
    """Run even if done (a forced run)."""
    activities_if_step_already_done: Activity | None
    """What to run instead when the step is skipped."""
    emit_signal: bool
    """Publish ``step.<name>`` on the bus after the step completed or was skipped."""
    force_steps_if_executed: Iterable[str] | None
    """Patterns of the dependent steps to force when this step runs."""
    bubbles_exception_on_failure: bool
    """Raise the activities' exception instead of returning a failed outcome."""
    keep_result: Any
    """``True`` or a type: keep the result in the done marker and return it when
    the step is skipped because it is done (validated as that type, if a type)."""
    on_missing_result: OnMissingResult
    """A done step whose kept result is missing or invalid: ``"run"`` it again
    (the default), skip it with ``"none"`` as result, or fail with ``"error"``."""
    rerun_on_new_version: bool
    """Run a done step again when its marker was written by another version."""
    exclusive: bool | None
    """Claim the step in the store before running it, so that runners in other
    processes or machines never run it at the same time (see
    :class:`~asteps.Runner`); ``None`` follows the runner's ``exclusive``."""
    retry: Retry | None
    """Attempt the activities again when they fail (:class:`~asteps.Retry`);
    ``None`` follows the runner's ``retry``. Needs activities that can run
    again: a function, a tuple, a Chain or a Group, not a coroutine."""
    time_limit: float | None
    """Seconds an attempt of the activities may take before it is cancelled and
    fails with :class:`~asteps.errors.StepTimeout`; ``None`` follows the
    runner's ``time_limit``."""


STEP_OPTIONS = frozenset(StepOptions.__annotations__)
"""The names :meth:`Runner.step <asteps.Runner.step>` accepts as options."""


class Step(BaseModel):
    """A named unit of work that runs once per workflow (simpleflow's ``Step``).

    Submit it with :meth:`asteps.Runner.submit`. Invalid names raise
    :class:`asteps.errors.InvalidStepName` from the constructor.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    activities: Any
    force: bool = False
    activities_if_step_already_done: Any = None
    emit_signal: bool = False
    force_steps_if_executed: list[str] = Field(default_factory=list)
    bubbles_exception_on_failure: bool = False
    keep_result: Any = False
    on_missing_result: OnMissingResult = "run"
    rerun_on_new_version: bool = False
    exclusive: bool | None = None
    retry: Any = None
    time_limit: float | None = None

    def __init__(self, name: str, activities: Activity, **options: Unpack[StepOptions]) -> None:
        try:
            # Validate here rather than in a field validator: pydantic would wrap
            # InvalidStepName in a ValidationError, and callers catch the former.
            validate_name(name)
            deps = options.get("force_steps_if_executed")
            if deps is not None:
                options["force_steps_if_executed"] = validate_patterns(deps)
            # Checked here too, so that a bad Step fails where it is built.
            check_retry(options.get("retry"), activities)
            check_time_limit(options.get("time_limit"))
            super().__init__(name=name, activities=activities, **options)
        except BaseException:
            close_unawaited(activities, options.get("activities_if_step_already_done"))
            raise

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        # Reached by model_validate(), which bypasses __init__.
        return validate_name(value)

    @field_validator("force_steps_if_executed", mode="before")
    @classmethod
    def _none_is_empty_and_patterns_valid(cls, value: Any) -> Any:
        return [] if value is None else validate_patterns(value)

    def options(self) -> StepOptions:
        """The step's options, as :meth:`Runner.step <asteps.Runner.step>` takes them."""
        return StepOptions(
            force=self.force,
            activities_if_step_already_done=self.activities_if_step_already_done,
            emit_signal=self.emit_signal,
            force_steps_if_executed=self.force_steps_if_executed,
            bubbles_exception_on_failure=self.bubbles_exception_on_failure,
            keep_result=self.keep_result,
            on_missing_result=self.on_missing_result,
            rerun_on_new_version=self.rerun_on_new_version,
            exclusive=self.exclusive,
            retry=self.retry,
            time_limit=self.time_limit,
        )


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What happened to one submitted step. Built once, by the runner.

    A frozen, slotted dataclass: the runner builds one per step, so it stays
    light (pydantic is kept for what crosses the process's edges).
    ``dataclasses.asdict(outcome)`` gives it as a dict.
    """

    name: str
    status: Status
    forced: bool
    reasons: tuple[str, ...]
    """Why it was decided so, in order (the decision's own tuple, shared)."""
    result: Any = None
    error: BaseException | None = None
    """The activities' exception for a failed step (or the :class:`MarkDoneError`)."""
    decision: Literal["run", "skip"] = "run"
    """What the decision was; a failed step was decided ``run``."""
    patterns: tuple[str, ...] = ()
    """The forced or skipped patterns that decided the step, if any."""
    duration: float = 0.0
    """Seconds spent in the step's phases."""
    attempts: int = 1
    """How many attempts of the activities it took: 1 unless the step was
    retried (:class:`~asteps.Retry`); 1 for a skipped or planned step too."""

    @property
    def shown_status(self) -> str:
        """The status in words: ``would run``/``would skip`` for a planned step."""
        return f"would {self.decision}" if self.status == "planned" else self.status

    @property
    def ok(self) -> bool:
        """True unless the step failed."""
        return self.status != "failed"


@dataclass(frozen=True, slots=True)
class Marker:
    """One ``log.step`` record, as simpleflow writes SWF markers."""

    name: str
    details: dict[str, Any]
