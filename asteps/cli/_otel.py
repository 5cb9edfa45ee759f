"""``--otel``: the OpenTelemetry SDK set up to export over OTLP/HTTP while a
command runs, and flushed, within a bound, when it ends.

asteps itself only emits (``asteps.instrument()``, in ``asteps._telemetry``);
choosing an SDK and an exporter is the application's business, here the
CLI's. ``opentelemetry`` is imported only when ``--otel`` is given.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from .._telemetry import INSTALL_HINT, OTEL_EXTRA, instrument, uninstrument

DEFAULT_SERVICE_NAME = "asteps"
"""The service name of what ``--otel`` sends, unless ``OTEL_SERVICE_NAME`` says another."""

DEFAULT_EXPORT_TIMEOUT = 10.0
"""Seconds, when ``OTEL_EXPORTER_OTLP_TIMEOUT`` does not say: the OTLP exporters' default."""


MAX_EXPORT_TIMEOUT = 3600.0
"""Seconds: the longest ``OTEL_EXPORTER_OTLP_TIMEOUT`` used. More is cut to this
(a thread cannot wait 1e12 s: the flush at exit crashed)."""

EXPORT_TIMEOUT = "OTEL_EXPORTER_OTLP_TIMEOUT"
SIGNAL_EXPORT_TIMEOUTS = {
    "spans": "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "metrics": "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
}
"""The per-signal variables, which win over ``OTEL_EXPORTER_OTLP_TIMEOUT`` for
each export of their signal (not for the flush at exit)."""


def collector_endpoint() -> str:
    """Where spans go, read from the environment as the OTLP/HTTP exporter
    reads it (the traces' own endpoint, else the general one with
    ``/v1/traces``, else ``http://localhost:4318``), without the traces' path:
    the collector the warning at exit names."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces.removesuffix("/v1/traces")
    general = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return (general or "http://localhost:4318").rstrip("/")


def export_timeout() -> float:
    """``OTEL_EXPORTER_OTLP_TIMEOUT`` in seconds (as the OTLP/HTTP exporter reads
    it), else 10: how long one export may take, and the whole flush at exit."""
    return read_export_timeout()[0]


def read_export_timeout(
    variable: str = EXPORT_TIMEOUT, *, fallback: float = DEFAULT_EXPORT_TIMEOUT
) -> tuple[float, str | None]:
    """The timeout in seconds that ``variable`` gives (:func:`export_timeout`
    by default), ``fallback`` when it is unset or empty; and, when its value
    was not used as given (not a number, not positive and finite, or longer
    than ``MAX_EXPORT_TIMEOUT``), the warning that says what is used instead.

    The environment is untrusted input: a per-signal variable
    (:data:`SIGNAL_EXPORT_TIMEOUTS`) is read with the general timeout as its
    ``fallback``, and checked alike."""
    raw = os.environ.get(variable)
    if raw is None or raw.strip() == "":
        return fallback, None
    what = f"{variable}={raw!r}"
    default = f"{fallback:g} s is used"
    try:
        value = float(raw)
    except ValueError:
        return fallback, f"{what} is not a number of seconds: {default}"
    if not (math.isfinite(value) and value > 0):
        return fallback, f"{what} is not a positive number of seconds: {default}"
    if value > MAX_EXPORT_TIMEOUT:
        return MAX_EXPORT_TIMEOUT, (
            f"{what} is longer than {MAX_EXPORT_TIMEOUT:g} s: {MAX_EXPORT_TIMEOUT:g} s is used"
        )
    return value, None


def run_within(budget: float, jobs: Mapping[str, Callable[[], object]]) -> set[str]:
    """Run ``jobs`` side by side, each in a daemon thread, and wait for them
    ``budget`` seconds in all; return the names of those that had not ended.

    A job that outlives the budget is left to its thread, which never holds
    the process: the caller has given up on it.
    """
    threads = {
        name: threading.Thread(target=job, name=f"asteps flush {name}", daemon=True)
        for name, job in jobs.items()
    }
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + budget
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    return {name for name, thread in threads.items() if thread.is_alive()}


class ExportTally:
    """What ``--otel`` recorded and what the collector took, for the warning at exit."""

    def __init__(self) -> None:
        self.spans_ended = 0
        self.spans_sent = 0
        self.flushing = False
        self.metrics_unsent = False
        """True while the flush at exit has metrics the collector has not taken."""
        self.lock = threading.Lock()


def export_otlp(*, warn: Callable[[str], object]) -> Callable[[], str | None]:
    """Set up the SDK to export over OTLP/HTTP, configured by the ``OTEL_*``
    environment variables, and instrument asteps. Returns the function that
    flushes and shuts it down: it returns within :func:`export_timeout`
    seconds, and says what the collector did not take (None if it took all).
    An ``OTEL_EXPORTER_OTLP_TIMEOUT`` (or a per-signal
    ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_TIMEOUT``) that is refused or cut
    is said to ``warn``, once, and the exporters are given the timeout used
    instead.

    The service name is ``asteps`` unless ``OTEL_SERVICE_NAME`` (or
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) says otherwise. Raises
    ``ImportError`` naming the extra when the SDK or the exporter is missing.
    """
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            MetricExportResult,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    except ImportError as exc:
        raise ImportError(
            f"--otel needs the OpenTelemetry SDK and OTLP exporter, which the extra "
            f"{OTEL_EXTRA} installs: {INSTALL_HINT}"
        ) from exc
    budget, refused = read_export_timeout()
    if refused is not None:
        warn(refused)
    # The exporters read the variables themselves unless given a timeout, and
    # took 1e12 s, inf or -1 as is (every export of that signal then failed):
    # they are given the timeouts read and checked here.
    timeouts = {}
    for signal, variable in SIGNAL_EXPORT_TIMEOUTS.items():
        timeouts[signal], cut = read_export_timeout(variable, fallback=budget)
        if cut is not None:
            warn(cut)
    tally = ExportTally()

    class CountedSpanExporter(OTLPSpanExporter):
        def export(self, spans: Any) -> Any:
            result = super().export(spans)
            if result is SpanExportResult.SUCCESS:
                with tally.lock:
                    tally.spans_sent += len(spans)
            return result

    class CountedMetricExporter(OTLPMetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float | None = 10000, **kw: Any) -> Any:
            if tally.flushing:
                tally.metrics_unsent = True
            result = super().export(metrics_data, timeout_millis, **kw)
            if tally.flushing and result is MetricExportResult.SUCCESS:
                tally.metrics_unsent = False
            return result

    class SpanCounter(SpanProcessor):
        def on_end(self, span: Any) -> None:
            with tally.lock:
                tally.spans_ended += 1

    # The environment's service name and resource attributes win over the default.
    resource = Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME}).merge(
        OTELResourceDetector().detect()
    )
    # atexit would shut down too, but after the event loop and logging are gone:
    # the CLI shuts down itself, when the command ends however it ends.
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    span_exporter = CountedSpanExporter(timeout=timeouts["spans"])
    tracer_provider.add_span_processor(SpanCounter())
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(CountedMetricExporter(timeout=timeouts["metrics"]))
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[reader], shutdown_on_exit=False
    )
    # Global, so that the spans a flow makes itself join the same traces.
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    instrument(tracer_provider, meter_provider)
    collector = collector_endpoint()

    def shutdown() -> str | None:
        uninstrument()
        tally.flushing = True
        sdk_logger = logging.getLogger("opentelemetry")
        if not sdk_logger.isEnabledFor(logging.INFO):
            # The SDK logs each retry and each failure; the one line returned
            # says what was lost. Logs at INFO (-v) keep the SDK's lines.
            sdk_logger.setLevel(logging.CRITICAL + 1)
        # Spans and metrics side by side, within one budget: one after the
        # other, each waited for its own timeout, twice the bound in all.
        late = run_within(
            budget,
            {
                "spans": tracer_provider.shutdown,  # flushes the spans still queued
                "metrics": partial(meter_provider.shutdown, timeout_millis=budget * 1000),
            },
        )
        if late:
            # Their threads may still log when they give up, while the
            # interpreter exits: nothing of theirs is wanted any more.
            sdk_logger.setLevel(logging.CRITICAL + 1)
        dropped = []
        with tally.lock:
            unsent, ended = tally.spans_ended - tally.spans_sent, tally.spans_ended
        if unsent > 0:
            dropped.append(f"{unsent:,} of {ended:,} spans")
        if tally.metrics_unsent or "metrics" in late:
            dropped.append("the last metrics")
        if not dropped:
            return None
        return (
            f"telemetry dropped: {' and '.join(dropped)}, not taken by {collector} within "
            f"{budget:g} s (OTEL_EXPORTER_OTLP_TIMEOUT); check that a collector listens there"
        )

    return shutdown
