"""OpenTelemetry: a span and metrics for every step decision, once instrumented.

Spans and metrics are read back from the SDK's in-memory exporter and reader:
what a collector would receive, without a collector.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import asteps
from asteps import FileStore, MarkDoneError, MemoryStore, Runner, StepOutcome
from asteps._telemetry import batch_span, workflow_span

from .conftest import FailingMarkStore


class Boom(Exception):
    pass


@dataclass
class Telemetry:
    """What an instrumented asteps emitted, read back."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one span of that name."""
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """The data points of a metric, by their attributes: value for counters,
        the data point itself for histograms."""
        data = self.reader.get_metrics_data()
        found: dict[frozenset[tuple[str, Any]], Any] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name != metric:
                        continue
                    for point in m.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        found[key] = getattr(point, "value", point)
        return found


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    asteps.instrument(tracer_provider, MeterProvider(metric_readers=[reader]))
    try:
        yield Telemetry(exporter, reader, tracer_provider)
    finally:
        asteps.uninstrument()


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def work() -> int:
    return 7


# -- one span per step ---------------------------------------------------------------


async def test_a_completed_step_is_a_span_with_its_decision_and_outcome(otel: Telemetry) -> None:
    runner = Runner(MemoryStore(), "customer-42", run_id="r1")
    await runner.step("export.csv", work)
    span = otel.span("asteps.step")
    assert attrs(span) == {
        "asteps.workflow_id": "customer-42",
        "asteps.run_id": "r1",
        "asteps.step.name": "export.csv",
        "asteps.step.decision": "run",
        "asteps.step.status": "completed",
        "asteps.step.forced": False,
        "asteps.step.reasons": (),
        "asteps.step.patterns": (),
        "asteps.step.attempts": 1,
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_a_done_step_is_skipped_with_the_reason(otel: Telemetry) -> None:
    store = MemoryStore()
    await Runner(store, "wf").step("a", work)
    otel.exporter.clear()
    await Runner(store, "wf").step("a", work)
    span = attrs(otel.span("asteps.step"))
    assert span["asteps.step.decision"] == "skip"
    assert span["asteps.step.status"] == "skipped"
    assert span["asteps.step.forced"] is False
    assert span["asteps.step.reasons"] == ("Step was already played",)


async def test_a_forced_step_names_its_patterns_and_reasons(otel: Telemetry) -> None:
    store = MemoryStore()
    await Runner(store, "wf").step("export.csv", work)
    runner = Runner(store, "wf")
    runner.add_forced_steps("export", reason="new columns")
    await runner.step("export.csv", work)
    span = attrs(otel.spans("asteps.step")[-1])
    assert span["asteps.step.decision"] == "run"
    assert span["asteps.step.status"] == "completed"
    assert span["asteps.step.forced"] is True
    assert span["asteps.step.reasons"] == ("new columns",)
    assert span["asteps.step.patterns"] == ("export",)


async def test_a_pattern_skipped_step_names_its_patterns_and_reasons(otel: Telemetry) -> None:
    runner = Runner(MemoryStore(), "wf")
    runner.add_skipped_steps("crawl", reason="crawler down")
    await runner.step("crawl.page-1", work)
    span = attrs(otel.span("asteps.step"))
    assert span["asteps.step.decision"] == "skip"
    assert span["asteps.step.status"] == "skipped"
    assert span["asteps.step.forced"] is True
    assert span["asteps.step.reasons"] == ("crawler down",)
    assert span["asteps.step.patterns"] == ("crawl",)


async def test_a_planned_step_of_a_dry_run_says_planned(otel: Telemetry) -> None:
    await Runner(MemoryStore(), "wf", dry_run=True).step("a", work)
    span = attrs(otel.span("asteps.step"))
    assert (span["asteps.step.decision"], span["asteps.step.status"]) == ("run", "planned")


async def test_a_failed_step_records_its_exception_and_the_error_status(otel: Telemetry) -> None:
    async def broken() -> None:
        raise Boom("upstream returned HTTP 503")

    outcome = await Runner(MemoryStore(), "wf").step("export.csv", broken)
    assert outcome.status == "failed"
    span = otel.span("asteps.step")
    assert attrs(span)["asteps.step.status"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Boom: upstream returned HTTP 503"
    [event] = span.events
    assert event.name == "exception"
    assert attrs(event)["exception.type"].endswith("Boom")


async def test_a_retried_step_has_its_attempts_an_event_per_retried_failure_and_a_count(
    otel: Telemetry,
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Boom(f"attempt {calls}")
        return "ok"

    async def no_wait(seconds: float) -> None:
        pass

    retry = asteps.Retry(3, delay=2.0, jitter=0.0, sleep=no_wait)
    outcome = await Runner(MemoryStore(), "wf").step("export.csv", flaky, retry=retry)
    assert outcome.status == "completed"
    span = otel.span("asteps.step")
    assert attrs(span)["asteps.step.attempts"] == 3
    assert span.status.status_code is not StatusCode.ERROR
    events = [attrs(e) for e in span.events]
    assert [(e["exception.message"], e["asteps.step.attempt"]) for e in events] == [
        ("attempt 1", 1),
        ("attempt 2", 2),
    ]
    assert [e["asteps.step.retry_delay"] for e in events] == [2.0, 4.0]
    assert otel.points("asteps.step.retries") == {frozenset({("status", "completed")}): 2}


async def test_a_step_tried_once_counts_no_retry(otel: Telemetry) -> None:
    await Runner(MemoryStore(), "wf").step("a", work, retry=asteps.Retry(3))
    assert attrs(otel.span("asteps.step"))["asteps.step.attempts"] == 1
    assert otel.points("asteps.step.retries") == {}


async def test_a_failure_raised_to_the_caller_is_recorded_too(otel: Telemetry) -> None:
    async def broken() -> None:
        raise Boom("no")

    with pytest.raises(Boom):
        await Runner(MemoryStore(), "wf").step("a", broken, bubbles_exception_on_failure=True)
    span = otel.span("asteps.step")
    assert attrs(span)["asteps.step.status"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


async def test_a_marker_that_cannot_be_written_is_an_error_span_with_the_mark_done_error(
    otel: Telemetry,
) -> None:
    with pytest.raises(MarkDoneError):
        await Runner(FailingMarkStore(), "wf").step("a", work)
    step = otel.span("asteps.step")
    assert attrs(step)["asteps.step.status"] == "failed"
    assert step.status.status_code is StatusCode.ERROR
    assert attrs(step.events[0])["exception.type"].endswith("MarkDoneError")
    mark = otel.span("asteps.store.mark_done")
    assert mark.status.status_code is StatusCode.ERROR
    assert (
        otel.points("asteps.store.requests")[
            frozenset({("operation", "mark_done"), ("outcome", "error")})
        ]
        == 1
    )


async def test_a_bad_step_name_is_an_error_span_without_outcome(otel: Telemetry) -> None:
    with pytest.raises(asteps.InvalidStepName):
        await Runner(MemoryStore(), "wf").step("not a name", work)
    span = otel.span("asteps.step")
    assert span.status.status_code is StatusCode.ERROR
    assert "asteps.step.status" not in attrs(span)


async def test_a_step_span_is_a_child_of_the_current_span(otel: Telemetry) -> None:
    tracer = otel.tracer_provider.get_tracer("service")
    with tracer.start_as_current_span("GET /customers/42") as request:
        await Runner(MemoryStore(), "customer-42").step("a", work)
    assert parent_id(otel.span("asteps.step")) == request.get_span_context().span_id


# -- store calls -----------------------------------------------------------------------


async def test_store_calls_are_spans_inside_their_step(otel: Telemetry, tmp_path: Any) -> None:
    runner = Runner(FileStore(tmp_path), "wf")
    await runner.step("a", work)
    step = otel.span("asteps.step")
    for operation in ("list_done", "mark_done"):
        call = otel.span(f"asteps.store.{operation}")
        assert attrs(call) == {"asteps.store.kind": "file", "asteps.store.prefix": "wf/steps/"}
        assert parent_id(call) == span_id(step)
    assert otel.points("asteps.store.requests") == {
        frozenset({("operation", "list_done"), ("outcome", "ok")}): 1,
        frozenset({("operation", "mark_done"), ("outcome", "ok")}): 1,
    }


async def test_reading_a_marker_body_is_a_span(otel: Telemetry) -> None:
    store = MemoryStore()
    await Runner(store, "wf").step("a", work, keep_result=int)
    outcome = await Runner(store, "wf").step("a", work, keep_result=int)
    assert (outcome.status, outcome.result) == ("skipped", 7)
    read = otel.span("asteps.store.read_marker")
    assert attrs(read)["asteps.store.kind"] == "memory"


async def test_an_exclusive_steps_claim_operations_are_spans_inside_its_step(
    otel: Telemetry,
) -> None:
    outcome = await Runner(MemoryStore(), "wf", exclusive=True).step("a", work)
    assert outcome.status == "completed"
    step = otel.span("asteps.step")
    for operation in ("create_claim", "read_marker", "mark_done", "delete_claim"):
        assert parent_id(otel.span(f"asteps.store.{operation}")) == span_id(step)


async def test_the_store_helpers_make_a_span_of_every_store_call(
    otel: Telemetry, tmp_path: Any
) -> None:
    async with FileStore(tmp_path) as store:
        await store.mark_done("wf/steps/", "a.b", {})
        assert await asteps.unmark_matching(store, "wf/steps/", "a") == ["a.b"]
        await asteps.list_done_many(store, ["wf/steps/", "other/steps/"])
    unmark = otel.span("asteps.store.unmark")
    assert attrs(unmark) == {"asteps.store.kind": "file", "asteps.store.prefix": "wf/steps/"}
    listed = [attrs(s)["asteps.store.prefix"] for s in otel.spans("asteps.store.list_done")]
    assert sorted(listed) == ["other/steps/", "wf/steps/", "wf/steps/"]
    assert (
        otel.points("asteps.store.requests")[
            frozenset({("operation", "unmark"), ("outcome", "ok")})
        ]
        == 1
    )


class ListOnlyStore:
    """A user's own store with the three methods of the protocol, and no read_marker."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    async def list_done(self, prefix: str) -> set[str]:
        return await self.inner.list_done(prefix)

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        await self.inner.mark_done(prefix, name, body)

    async def unmark(self, prefix: str, names: Any) -> None:
        await self.inner.unmark(prefix, names)


async def test_a_store_without_read_marker_stays_without_it_when_traced(otel: Telemetry) -> None:
    store = ListOnlyStore()
    await Runner(store, "wf").step("k", work)
    assert (await Runner(store, "wf").step("k", work)).status == "skipped"
    with pytest.raises(asteps.AstepsError, match=r"ListOnlyStore.*cannot read marker bodies"):
        await Runner(store, "wf").step("k", work, keep_result=int)
    assert {attrs(s)["asteps.store.kind"] for s in otel.spans("asteps.store.list_done")} == {
        "listonly"
    }
    assert otel.spans("asteps.store.read_marker") == []


# -- metrics -----------------------------------------------------------------------------


async def test_the_step_metrics_count_the_outcomes(otel: Telemetry) -> None:
    async def broken() -> None:
        raise Boom("no")

    store = MemoryStore()
    await Runner(store, "wf").step("done", work)
    runner = Runner(store, "wf")
    runner.add_forced_steps("forced")
    runner.add_skipped_steps("skipped")
    async with anyio.create_task_group() as tg:
        for name, activity in [
            ("done", work),
            ("forced.a", work),
            ("forced.b", work),
            ("skipped.a", work),
            ("plain", work),
            ("broken", broken),
        ]:
            tg.start_soon(runner.step, name, activity)
    outcomes: list[StepOutcome] = [*runner.outcomes]
    outcomes.append(StepOutcome(name="done", status="completed", forced=False, reasons=[]))
    expected = Counter(frozenset({("status", o.status), ("forced", o.forced)}) for o in outcomes)
    assert otel.points("asteps.steps") == dict(expected)
    durations = otel.points("asteps.step.duration")
    by_status = Counter(o.status for o in outcomes)
    assert {dict(k)["status"]: p.count for k, p in durations.items()} == dict(by_status)
    assert len(otel.spans("asteps.step")) == len(outcomes)


# -- batches: batch, workflow, step ---------------------------------------------------------


async def flow(runner: Runner, fail: bool) -> None:
    async def broken() -> None:
        raise Boom("no")

    await runner.step("fetch", work)
    await runner.step("export", broken if fail else work)


async def small_batch(ids: dict[str, bool]) -> dict[str, bool]:
    """What BatchRun does, in small: a batch span around workflows run at once,
    each in its workflow span, ``ok`` unless a step failed."""
    store = MemoryStore()
    oks: dict[str, bool] = {}

    async def one(workflow_id: str, fail: bool) -> None:
        with workflow_span(workflow_id) as workflow:
            runner = Runner(store, workflow_id)
            await flow(runner, fail)
            workflow.ok = oks[workflow_id] = all(o.ok for o in runner.outcomes)

    with batch_span():
        async with anyio.create_task_group() as tg:
            for workflow_id, fail in ids.items():
                tg.start_soon(one, workflow_id, fail)
    return oks


async def test_a_batch_span_holds_workflow_spans_that_hold_their_steps(otel: Telemetry) -> None:
    oks = await small_batch({"c-1": False, "c-2": True, "c-3": False})
    assert oks == {"c-1": True, "c-2": False, "c-3": True}
    batch = otel.span("asteps.batch")
    workflows = {attrs(s)["asteps.workflow_id"]: s for s in otel.spans("asteps.workflow")}
    assert set(workflows) == {"c-1", "c-2", "c-3"}
    for wid, span in workflows.items():
        assert parent_id(span) == span_id(batch)
        assert attrs(span)["asteps.workflow.ok"] is oks[wid]
        steps = [s for s in otel.spans("asteps.step") if parent_id(s) == span_id(span)]
        assert sorted(attrs(s)["asteps.step.name"] for s in steps) == ["export", "fetch"]
        assert all(attrs(s)["asteps.workflow_id"] == wid for s in steps)
    assert workflows["c-2"].status.status_code is StatusCode.ERROR
    assert workflows["c-1"].status.status_code is StatusCode.UNSET
    assert otel.points("asteps.workflows") == {
        frozenset({("ok", True)}): 2,
        frozenset({("ok", False)}): 1,
    }


async def test_a_workflow_whose_flow_raises_is_not_ok(otel: Telemetry) -> None:
    with pytest.raises(Boom), workflow_span("c-9"):
        raise Boom("the flow broke")
    span = otel.span("asteps.workflow")
    assert attrs(span)["asteps.workflow.ok"] is False
    assert otel.points("asteps.workflows") == {frozenset({("ok", False)}): 1}


async def test_the_batch_context_managers_do_nothing_when_not_instrumented() -> None:
    oks = await small_batch({"c-1": False, "c-2": True})
    assert oks == {"c-1": True, "c-2": False}


# -- off until asked for ----------------------------------------------------------------------


async def test_uninstrument_stops_every_span(otel: Telemetry) -> None:
    asteps.uninstrument()
    await Runner(MemoryStore(), "wf").step("a", work)
    assert otel.spans() == []
    assert otel.points("asteps.steps") == {}


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_instrument_a_run_imports_no_opentelemetry_and_emits_nothing() -> None:
    out = run_python(
        """
        import sys
        import anyio
        from asteps import MemoryStore, Runner

        async def main():
            runner = Runner(MemoryStore(), "wf")
            await runner.step("a", lambda: 1)
            await runner.step("a", lambda: 1)
            print([o.status for o in runner.outcomes])

        anyio.run(main)
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert out.splitlines() == ["['completed', 'skipped']", "[]"]


def test_without_instrument_a_global_tracer_provider_receives_no_span() -> None:
    out = run_python(
        """
        import anyio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from asteps import MemoryStore, Runner

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        anyio.run(Runner(MemoryStore(), "wf").step, "a", lambda: 1)
        print(len(exporter.get_finished_spans()))
        """
    )
    assert out == "0"


def test_instrument_without_the_extra_names_the_extra() -> None:
    out = run_python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        import asteps
        try:
            asteps.instrument()
        except ImportError as exc:
            print(exc)
        """
    )
    assert "pip install 'asteps[otel]'" in out


# -- to append to tests/test_telemetry.py once _batch.py carries the spans ----------


async def test_a_batch_run_is_a_batch_span_of_workflow_spans_of_step_spans(
    otel: Telemetry,
) -> None:
    from asteps._batch import BatchRun

    async def batch_flow(runner: Runner, fail: str = "") -> None:
        await flow(runner, runner.workflow_id == fail)

    batch_run = BatchRun(batch_flow, MemoryStore(), params={"fail": "c-2"}, concurrency=2)
    summary = await batch_run.run(["c-1", "c-2", "c-3"])
    assert summary.failed_ids == ["c-2"]
    batch = otel.span("asteps.batch")
    workflows = {attrs(s)["asteps.workflow_id"]: s for s in otel.spans("asteps.workflow")}
    assert {wid: attrs(s)["asteps.workflow.ok"] for wid, s in workflows.items()} == {
        "c-1": True,
        "c-2": False,
        "c-3": True,
    }
    assert {parent_id(s) for s in workflows.values()} == {span_id(batch)}
    for span in workflows.values():
        steps = [s for s in otel.spans("asteps.step") if parent_id(s) == span_id(span)]
        assert sorted(attrs(s)["asteps.step.name"] for s in steps) == ["export", "fetch"]
    listings = otel.spans("asteps.store.list_done")
    assert len(listings) == 3
    assert {parent_id(s) for s in listings} == {span_id(batch)}
    assert otel.points("asteps.workflows") == {
        frozenset({("ok", True)}): 2,
        frozenset({("ok", False)}): 1,
    }


# -- the flush at exit (--otel) ----------------------------------------------------------


def test_the_flush_runs_spans_and_metrics_side_by_side() -> None:
    """Each job waits for the other to have started: one after the other, the
    first would wait out the budget (a minute) and the test would fail."""
    from asteps.cli._otel import run_within

    both_started = threading.Barrier(2)
    late = run_within(60, {"spans": both_started.wait, "metrics": both_started.wait})
    assert late == set()


def test_a_job_that_never_ends_is_left_behind_when_the_budget_is_spent() -> None:
    """The job cannot end before it is released, whatever the machine's speed:
    the flush returns without it and names it."""
    from asteps.cli._otel import run_within

    release = threading.Event()
    try:
        late = run_within(0.05, {"spans": release.wait, "metrics": lambda: None})
    finally:
        release.set()
    assert late == {"spans"}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 10.0), ("2.5", 2.5), ("30", 30.0), ("soon", 10.0), ("0", 10.0), ("-1", 10.0),
     ("inf", 10.0), ("nan", 10.0), ("3600", 3600.0), ("1e12", 3600.0)],
)  # fmt: skip
def test_the_flush_budget_is_the_otlp_export_timeout_in_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str | None, seconds: float
) -> None:
    from asteps.cli._otel import export_timeout

    if value is None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", value)
    assert export_timeout() == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 20.0), ("", 20.0), ("2.5", 2.5), ("soon", 20.0), ("0", 20.0), ("-1", 20.0),
     ("nan", 20.0), ("inf", 20.0), ("3600", 3600.0), ("1e12", 3600.0)],
)  # fmt: skip
def test_a_per_signal_export_timeout_is_checked_and_falls_back_to_the_general_one(
    monkeypatch: pytest.MonkeyPatch, value: str | None, seconds: float
) -> None:
    from asteps.cli._otel import read_export_timeout

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "20")
    if value is None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value)
    general, _ = read_export_timeout()
    used, warning = read_export_timeout("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", fallback=general)
    assert used == seconds
    assert (warning is None) == (value in (None, "", "2.5", "3600"))
    if warning is not None:
        assert f"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT={value!r}" in warning


@pytest.mark.parametrize(
    ("traces", "general", "named"),
    [(None, None, "http://localhost:4318"),
     (None, "http://collector:4318/", "http://collector:4318"),
     ("http://traces:4318/v1/traces", "http://collector:4318", "http://traces:4318")],
)  # fmt: skip
def test_the_collector_named_at_exit_is_read_from_the_environment_as_the_exporter_reads_it(
    monkeypatch: pytest.MonkeyPatch, traces: str | None, general: str | None, named: str
) -> None:
    # It was read from the exporter's private attribute _endpoint.
    from asteps.cli._otel import collector_endpoint

    for variable, value in [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces),
                            ("OTEL_EXPORTER_OTLP_ENDPOINT", general)]:  # fmt: skip
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    assert collector_endpoint() == named


def test_telemetry_imports_nothing_of_the_runner() -> None:
    # The runner hands each step's outcome to its span (StepSpan.finish):
    # telemetry needs neither the Runner nor its outcomes, and the package
    # keeps no import circle between the two, not even for type checking.
    import ast
    from pathlib import Path

    source = Path(asteps.__file__).with_name("_telemetry.py").read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert not {m for m in imported if m.lstrip(".").startswith(("_runner", "_phases"))}
