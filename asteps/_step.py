"""The step vocabulary: Step (what to run), StepOutcome (what happened) and
Marker (the ``log.step`` record of each phase)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._canvas import Activity
from ._names import validate_name, validate_patterns

Status = Literal["completed", "skipped", "failed", "planned"]
"""``planned`` appears only in dry runs, where nothing is executed."""


class Step(BaseModel):
    """A named unit of work that runs once per workflow (simpleflow's ``Step``).

    Submit it with :meth:`asteps.Runner.submit`. Invalid names raise
    :class:`asteps.errors.InvalidStepName` from the constructor.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    activities: Activity
    force: bool = False
    activities_if_step_already_done: Activity = None
    emit_signal: bool = False
    force_steps_if_executed: list[str] = Field(default_factory=list)
    bubbles_exception_on_failure: bool = False

    def __init__(self, name: str, activities: Activity, **kwargs: Any) -> None:
        # Validate here rather than in a field validator: pydantic would wrap
        # InvalidStepName in a ValidationError, and callers catch the former.
        validate_name(name)
        deps = kwargs.get("force_steps_if_executed")
        if deps is not None:
            kwargs["force_steps_if_executed"] = validate_patterns(deps)
        super().__init__(name=name, activities=activities, **kwargs)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        # Reached by model_validate(), which bypasses __init__.
        return validate_name(value)

    @field_validator("force_steps_if_executed", mode="before")
    @classmethod
    def _none_is_empty_and_patterns_valid(cls, value: Any) -> Any:
        return [] if value is None else validate_patterns(value)


class StepOutcome(BaseModel):
    """What happened to one submitted step."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    status: Status
    forced: bool
    reasons: list[str]
    result: Any = None
    error: BaseException | None = None
    decision: Literal["run", "skip"] = "run"
    """What the decision was; a failed step was decided ``run``."""
    patterns: tuple[str, ...] = ()
    """The forced or skipped patterns that decided the step, if any."""
    duration: float = 0.0
    """Seconds spent in the step's phases."""

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
    """One ``log.step`` record, as simpleflow writes SWF markers.

    A plain dataclass rather than a model: the runner writes two per executed
    step, on the hot path.
    """

    name: str
    details: dict[str, Any]
