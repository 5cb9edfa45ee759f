"""A webhook service with exclusive steps on S3: run as many replicas as you like.

``POST /webhook/{workflow_id}`` runs the workflow's steps (``validate``,
``fetch``, ``notify``) with ``exclusive=True`` on an :class:`~asteps.S3Store`:
when a sender delivers the same webhook twice, at the same moment, to two
replicas, each step's work runs once. The replica that claims a step first
runs it; the other waits for its marker and skips it. Both answer 200 with
the steps' statuses. ``GET /health`` answers once the store is open.

Configuration, from the environment, read and checked at start-up (a bad
value stops the process with a message naming the variable):

- ``WEBHOOK_BUCKET``: the S3 bucket of the markers (required).
- ``WEBHOOK_S3_ENDPOINT``: an ``http(s)://host[:port]`` S3 endpoint (optional;
  for MinIO, moto or a VPC endpoint).
- ``WEBHOOK_SIDE_EFFECTS``: a file each step's work appends
  ``<workflow id> <step>`` to (required; stands for your real work).
- ``WEBHOOK_LEASE``: seconds a step's claim holds, renewed while it runs
  (optional, default 30).
- ``WEBHOOK_TRACES``: a file to append spans to, one JSON object a line; when
  set, asteps is instrumented and each request is a server span that
  continues the caller's ``traceparent`` (needs ``asteps[otel]``).

Run it (Starlette and uvicorn are this example's dependencies, not asteps')::

    WEBHOOK_BUCKET=my-markers WEBHOOK_SIDE_EFFECTS=/tmp/effects \\
        uvicorn webhook_service:create_app --factory --app-dir examples --port 8000
    curl -X POST localhost:8000/webhook/customer-42
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asteps import InvalidStepName, Runner, S3Store, StoreError

STEPS = ("validate", "fetch", "notify")
MAX_PATH_BYTES = 4096
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ConfigError(ValueError):
    """An environment variable of the service is missing or malformed."""


@dataclass(frozen=True)
class Config:
    """The service's settings, checked (see the module docstring)."""

    bucket: str
    endpoint_url: str | None
    side_effects: Path
    lease: float
    traces: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        bucket = env.get("WEBHOOK_BUCKET", "")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(
                f"WEBHOOK_BUCKET={bucket[:80]!r} is not an S3 bucket name "
                "(3 to 63 characters: lowercase letters, digits, '.' and '-')"
            )
        endpoint = env.get("WEBHOOK_S3_ENDPOINT") or None
        if endpoint is not None and len(endpoint) > 2048:
            raise ConfigError("WEBHOOK_S3_ENDPOINT is longer than 2048 characters")
        lease_text = env.get("WEBHOOK_LEASE", "30")
        try:
            lease = float(lease_text)
        except ValueError:
            lease = math.nan
        if not (math.isfinite(lease) and 0.05 <= lease <= 86400):
            raise ConfigError(
                f"WEBHOOK_LEASE={lease_text[:40]!r} is not a number of seconds from 0.05 to 86400"
            )
        traces = env.get("WEBHOOK_TRACES") or None
        return cls(
            bucket=bucket,
            endpoint_url=endpoint,
            side_effects=_writable_file("WEBHOOK_SIDE_EFFECTS", env.get("WEBHOOK_SIDE_EFFECTS")),
            lease=lease,
            traces=None if traces is None else _writable_file("WEBHOOK_TRACES", traces),
        )


def _writable_file(name: str, value: str | None) -> Path:
    if not value:
        raise ConfigError(f"{name} is not set: give the path of a file to append to")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES or "\0" in value:
        raise ConfigError(f"{name} is not a usable path (over {MAX_PATH_BYTES} bytes, or NUL)")
    path = Path(value)
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError(
            f"{name}={value[:200]!r}: {str(path.parent)!r} is not a writable directory"
        )
    if path.is_dir():
        raise ConfigError(f"{name}={value[:200]!r} is a directory")
    return path


def append_line(path: Path, line: str) -> None:
    """One write on an O_APPEND descriptor: lines from several processes never mix."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


# -- the workflow ------------------------------------------------------------------


async def run_workflow(store: S3Store, config: Config, workflow_id: str) -> dict[str, str]:
    """The workflow's steps, each claimed before it runs; their statuses.

    Raises :class:`~asteps.InvalidStepName` for an id that cannot be a workflow id.
    """
    runner = Runner(store, workflow_id, exclusive=True, lease=config.lease)
    for name in STEPS:
        line = f"{workflow_id} {name}"
        # A sync callable runs in a worker thread: the event loop never waits on the disk.
        await runner.step(name, lambda line=line: append_line(config.side_effects, line))
    return {o.name: o.status for o in runner.outcomes}


async def webhook(request: Request) -> JSONResponse:
    # The body is not read: the path says everything this service needs.
    workflow_id = request.path_params["workflow_id"]
    state = request.app.state
    try:
        steps = await run_workflow(state.store, state.config, workflow_id)
    except InvalidStepName as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except StoreError as exc:
        return JSONResponse({"error": f"the store failed: {exc}"}, status_code=503)
    ok = all(status in ("completed", "skipped") for status in steps.values())
    return JSONResponse(
        {"workflow_id": workflow_id, "steps": steps}, status_code=200 if ok else 500
    )


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


# -- the app ---------------------------------------------------------------------


def create_app(env: Mapping[str, str] | None = None) -> ASGIApp:
    """The service, configured from ``env`` (default: the process's environment).

    Raises :class:`ConfigError` (or :class:`~asteps.StoreError` for a bad
    endpoint) before anything is opened.
    """
    config = Config.from_env(os.environ if env is None else env)
    store = S3Store(config.bucket, endpoint_url=config.endpoint_url)  # checks the endpoint
    provider = _start_tracing(config.traces) if config.traces is not None else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.config = config
        async with store:
            app.state.store = store
            try:
                yield
            finally:
                if provider is not None:
                    provider.shutdown()  # the spans are written

    app = Starlette(
        routes=[
            Route("/webhook/{workflow_id}", webhook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return app if provider is None else ServerSpans(app, provider)


# -- telemetry ---------------------------------------------------------------------


def _start_tracing(path: Path) -> Any:
    """A tracer provider that writes spans to ``path`` as JSON lines, which
    asteps now uses."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    import asteps

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    asteps.instrument(tracer_provider=provider)
    return provider


class JsonLinesExporter:
    """An OpenTelemetry span exporter that appends one JSON object a span to a
    file: name, kind, trace and span ids (hex), the parent's span id, attributes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        for span in spans:
            context, parent = span.get_span_context(), span.parent
            data = {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": f"{context.trace_id:032x}",
                "span_id": f"{context.span_id:016x}",
                "parent_span_id": None if parent is None else f"{parent.span_id:016x}",
                "attributes": dict(span.attributes or {}),
            }
            append_line(self.path, json.dumps(data, default=str))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ServerSpans:
    """ASGI middleware: each HTTP request in a server span that continues the
    caller's W3C ``traceparent``, so that the steps a request runs are its
    children (what ``opentelemetry-instrumentation-asgi`` does, in brief)."""

    def __init__(self, app: ASGIApp, provider: Any) -> None:
        from opentelemetry import propagate, trace

        self.app = app
        self.propagate = propagate
        self.tracer = trace.get_tracer("webhook_service", tracer_provider=provider)
        self.server = trace.SpanKind.SERVER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = self.propagate.extract(carrier)
        attributes = {"http.request.method": scope["method"], "url.path": scope["path"][:256]}
        name = f"{scope['method']} {_route(scope['path'])}"
        with self.tracer.start_as_current_span(
            name, context=parent, kind=self.server, attributes=attributes
        ) as span:

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_status)


def _route(path: str) -> str:
    """The route of ``path``, not the path: a span name must not carry an id."""
    return "/webhook/{workflow_id}" if path.startswith("/webhook/") else path[:64]
