"""OpenTelemetry traces and metrics for asteps: off until ``instrument()``.

Everything asteps knows of OpenTelemetry is in this module. What is emitted:

- a span ``asteps.step`` per submitted step (child of the current span), with
  the decision and the outcome as attributes; a failed step records its
  exception and has the error status;
- a span ``asteps.store.<operation>`` per store call a runner, a batch or a
  helper of ``asteps.stores`` makes;
- ``asteps.workflow`` and ``asteps.batch`` spans around a batch's workflows
  (:func:`workflow_span`, :func:`batch_span`);
- the counters ``asteps.steps``, ``asteps.step.retries``,
  ``asteps.store.requests`` and ``asteps.workflows``, and the histogram
  ``asteps.step.duration`` (seconds);
- a step's attempts (``asteps.step.attempts``) on its span, and each failed
  attempt that is retried as an exception event on it (:func:`attempt_failed`).

Why it works this way:

- ``opentelemetry`` is imported only by :func:`instrument` (no SDK, no
  exporter: those are the application's, as ``--otel`` is the CLI's, in
  ``asteps.cli._otel``): a program that never asks pays neither the import nor
  any span. Until then :data:`active` is None, and the runner's only cost is
  to look at it once per step.
- Store calls are traced by wrapping the store a runner uses (:class:`TracedStore`),
  so no store needs to know about telemetry, a store of your own included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._lifecycle import Wrapper
from .errors import describe
from .stores.base import DoneStore, HoldsClaims, ReadsMarkers

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from ._step import StepOutcome

OTEL_EXTRA = "asteps[otel]"
INSTALL_HINT = f"pip install '{OTEL_EXTRA}'"

active: Telemetry | None = None
"""The instrumentation in force: None until :func:`instrument`, again after
:func:`uninstrument`. The runner reads it once per step."""


def instrument(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Emit spans and metrics for every step, from now on.

    Uses the global tracer and meter providers unless others are given. Calling
    it again replaces the providers. Raises ``ImportError`` naming the extra
    ``asteps[otel]`` when OpenTelemetry is not installed.
    """
    global active
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:
        raise ImportError(
            f"asteps.instrument() needs OpenTelemetry, which the extra {OTEL_EXTRA} "
            f"installs: {INSTALL_HINT}"
        ) from exc
    from . import __version__

    tracer = trace.get_tracer("asteps", __version__, tracer_provider)
    meter = metrics.get_meter("asteps", __version__, meter_provider)
    active = Telemetry(tracer, meter)


def uninstrument() -> None:
    """Emit nothing any more (steps already running finish their spans)."""
    global active
    active = None


class Telemetry:
    """The tracer, the instruments, and how a step, a store call, a workflow or
    a batch becomes a span. Built by :func:`instrument`."""

    def __init__(self, tracer: Any, meter: Any) -> None:
        from opentelemetry.trace import StatusCode

        self.tracer = tracer
        self.error_status = StatusCode.ERROR
        self.steps = meter.create_counter(
            "asteps.steps", unit="{step}", description="Steps submitted, by status and forced."
        )
        self.retries = meter.create_counter(
            "asteps.step.retries",
            unit="{attempt}",
            description="Attempts of steps' activities made again after a failure, by status.",
        )
        self.step_duration = meter.create_histogram(
            "asteps.step.duration", unit="s", description="Time spent in a step's phases."
        )
        self.store_requests = meter.create_counter(
            "asteps.store.requests",
            unit="{request}",
            description="Store calls, by operation and outcome (ok or error).",
        )
        self.workflows = meter.create_counter(
            "asteps.workflows", unit="{workflow}", description="Workflows run in batches, by ok."
        )

    # -- steps -------------------------------------------------------------------

    @contextmanager
    def step_span(self, workflow_id: str, run_id: str, name: str) -> Iterator[StepSpan]:
        """A span ``asteps.step`` around one step of a runner. The runner hands
        the step's outcome, returned or raised, to the :class:`StepSpan`
        yielded; a step that raises with no outcome (a bad name or option)
        records the exception instead."""
        attributes = {
            "asteps.workflow_id": workflow_id,
            "asteps.run_id": run_id,
            "asteps.step.name": name,
        }
        with self.tracer.start_as_current_span(
            "asteps.step", attributes=attributes, record_exception=False
        ) as span:
            step = StepSpan(span, self)
            try:
                yield step
            except Exception as exc:
                if not step.finished:
                    span.record_exception(exc)
                    span.set_status(self.error_status, describe(exc))
                raise

    def finish_workflow(self, span: Span, *, ok: bool) -> None:
        """Record how a workflow ended on its span and in ``asteps.workflows``."""
        span.set_attribute("asteps.workflow.ok", ok)
        if not ok:
            span.set_status(self.error_status, "the workflow failed")
        self.workflows.add(1, {"ok": ok})

    # -- stores ------------------------------------------------------------------

    def traced(self, store: DoneStore) -> DoneStore:
        """``store``, with every call a span (a store already traced is kept)."""
        if isinstance(store, TracedStore):
            return store
        if isinstance(store, HoldsClaims):
            return TracedClaimsStore(store, self)
        if isinstance(store, ReadsMarkers):
            return TracedMarkerStore(store, self)
        return TracedStore(store, self)

    @contextmanager
    def store_call(self, operation: str, kind: str, prefix: str) -> Iterator[None]:
        """A span ``asteps.store.<operation>``, counted in ``asteps.store.requests``."""
        attributes = {"asteps.store.kind": kind, "asteps.store.prefix": prefix}
        with self.tracer.start_as_current_span(f"asteps.store.{operation}", attributes=attributes):
            try:
                yield
            except Exception:
                self.store_requests.add(1, {"operation": operation, "outcome": "error"})
                raise
            self.store_requests.add(1, {"operation": operation, "outcome": "ok"})


class StepSpan:
    """The span of one step, to which the runner hands the step's outcome."""

    __slots__ = ("finished", "span", "telemetry")

    def __init__(self, span: Span, telemetry: Telemetry) -> None:
        self.span = span
        self.telemetry = telemetry
        self.finished = False

    def finish(self, outcome: StepOutcome) -> None:
        """Record ``outcome`` on the span and in the step metrics."""
        self.finished = True
        span, telemetry = self.span, self.telemetry
        span.set_attributes(
            {
                "asteps.step.decision": outcome.decision,
                "asteps.step.status": outcome.status,
                "asteps.step.forced": outcome.forced,
                "asteps.step.reasons": list(outcome.reasons),
                "asteps.step.patterns": list(outcome.patterns),
                "asteps.step.attempts": outcome.attempts,
            }
        )
        if outcome.error is not None:
            span.record_exception(outcome.error)
            span.set_status(telemetry.error_status, describe(outcome.error))
        telemetry.steps.add(1, {"status": outcome.status, "forced": outcome.forced})
        if outcome.attempts > 1:
            telemetry.retries.add(outcome.attempts - 1, {"status": outcome.status})
        telemetry.step_duration.record(outcome.duration, {"status": outcome.status})


def attempt_failed(exc: Exception, attempt: int, delay: float) -> None:
    """An attempt of the current step failed and will be retried: an exception
    event on the step's span (nothing while telemetry is off)."""
    if active is None:
        return
    from opentelemetry import trace

    trace.get_current_span().record_exception(
        exc, attributes={"asteps.step.attempt": attempt, "asteps.step.retry_delay": delay}
    )


def traced_store(store: DoneStore) -> DoneStore:
    """``store`` as the runner should call it: traced while instrumented, else itself."""
    return store if active is None else active.traced(store)


def store_kind(store: object) -> str:
    """``memory``, ``file``, ``s3``: the store's class name without ``Store``, lowercase."""
    return type(store).__name__.removesuffix("Store").lower() or "store"


class TracedStore(Wrapper):
    """A :class:`DoneStore` whose calls are spans ``asteps.store.<operation>``.

    Built by :func:`traced_store` (or ``Telemetry.traced``) while instrumented,
    around the store a runner or a batch was given; it changes nothing else.
    """

    def __init__(self, store: DoneStore, telemetry: Telemetry) -> None:
        self.store = store
        self.kind = store_kind(store)
        self._telemetry = telemetry

    def __repr__(self) -> str:
        return repr(self.store)  # error messages name the user's store

    async def list_done(self, prefix: str) -> set[str]:
        with self._telemetry.store_call("list_done", self.kind, prefix):
            return await self.store.list_done(prefix)

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        with self._telemetry.store_call("mark_done", self.kind, prefix):
            await self.store.mark_done(prefix, name, body)

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        with self._telemetry.store_call("unmark", self.kind, prefix):
            await self.store.unmark(prefix, names)

    def _wrapped(self) -> DoneStore:
        return self.store


class TracedMarkerStore(TracedStore):
    """A :class:`TracedStore` for a store that reads marker bodies (``read_marker``)."""

    async def read_marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        assert isinstance(self.store, ReadsMarkers)
        with self._telemetry.store_call("read_marker", self.kind, prefix):
            return await self.store.read_marker(prefix, name)


class TracedClaimsStore(TracedMarkerStore):
    """A :class:`TracedMarkerStore` for a store that holds the claims of
    exclusive steps: each claim operation is a span too."""

    def _claims(self) -> HoldsClaims:
        assert isinstance(self.store, HoldsClaims)
        return self.store

    async def create_claim(self, prefix: str, name: str, body: Mapping[str, Any]) -> str | None:
        with self._telemetry.store_call("create_claim", self.kind, prefix):
            return await self._claims().create_claim(prefix, name, body)

    async def read_claim(self, prefix: str, name: str) -> str | None:
        with self._telemetry.store_call("read_claim", self.kind, prefix):
            return await self._claims().read_claim(prefix, name)

    async def replace_claim(
        self, prefix: str, name: str, token: str, body: Mapping[str, Any]
    ) -> str | None:
        with self._telemetry.store_call("replace_claim", self.kind, prefix):
            return await self._claims().replace_claim(prefix, name, token, body)

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        with self._telemetry.store_call("delete_claim", self.kind, prefix):
            await self._claims().delete_claim(prefix, name, token)


# -- batches -----------------------------------------------------------------------


class WorkflowSpan:
    """What a workflow's span reports when the block ends: set ``ok`` to False
    for a workflow that failed without raising (a step failed)."""

    __slots__ = ("ok",)

    def __init__(self) -> None:
        self.ok = True


@contextmanager
def workflow_span(workflow_id: str) -> Iterator[WorkflowSpan]:
    """One workflow of a batch: a span ``asteps.workflow``, parent of its steps.

    On leaving, records ``asteps.workflow.ok`` (False if the block raised or
    set ``ok = False``) and counts it in ``asteps.workflows``. A cancelled
    workflow did not finish: it is neither ok nor counted.
    """
    state = WorkflowSpan()
    telemetry = active
    if telemetry is None:
        yield state
        return
    with telemetry.tracer.start_as_current_span(
        "asteps.workflow", attributes={"asteps.workflow_id": workflow_id}
    ) as span:
        try:
            yield state
        except Exception:
            telemetry.finish_workflow(span, ok=False)
            raise
        telemetry.finish_workflow(span, ok=state.ok)


@contextmanager
def batch_span() -> Iterator[None]:
    """A whole batch: a span ``asteps.batch``, parent of its workflows."""
    telemetry = active
    if telemetry is None:
        yield
        return
    with telemetry.tracer.start_as_current_span("asteps.batch"):
        yield
