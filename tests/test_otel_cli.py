"""``--otel``: the CLI exports traces and metrics over OTLP/HTTP, and flushes on exit.

Each test starts a tiny OTLP/HTTP receiver on a loopback port (it decodes the
protobuf posts), then runs ``asteps`` in a real process pointed at it through
the standard ``OTEL_*`` variables.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .conftest import asteps_process

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = f"{ROOT / 'examples' / 'export_pipeline.py'}:flow"

HOLDING_FLOW = """
from pathlib import Path

import anyio


async def flow(runner, *, started):
    await runner.step("fetch", lambda: 1)

    async def hold():
        Path(started).write_text("holding")  # tells the test that the step runs
        await anyio.sleep_forever()

    await runner.step("hold", hold)
"""


@dataclass
class Receiver:
    """What an OTLP/HTTP collector received: the decoded posts, by path."""

    endpoint: str = ""
    posts: list[tuple[str, str, bytes]] = field(default_factory=list)

    def traces(self) -> list[dict[str, Any]]:
        """Every span received: name, attributes, status code, service name."""
        spans = []
        for path, _, body in self.posts:
            if path != "/v1/traces":
                continue
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                service = _attributes(resource.resource.attributes).get("service.name")
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        spans.append(
                            {
                                "name": span.name,
                                "attributes": _attributes(span.attributes),
                                "status": span.status.code,
                                "service": service,
                            }
                        )
        return spans

    def steps(self) -> dict[str, dict[str, Any]]:
        """The ``asteps.step`` spans received, by step name."""
        spans = (s for s in self.traces() if s["name"] == "asteps.step")
        return {s["attributes"]["asteps.step.name"]: s for s in spans}

    def metric_names(self) -> set[str]:
        names = set()
        for path, _, body in self.posts:
            if path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        names.update(m.name for m in scope.metrics)
        return names


def _attributes(pairs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        value = getattr(pair.value, kind)
        if kind == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        values[pair.key] = value
    return values


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.posts.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp receiver", daemon=True)
    thread.start()
    received.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def otel_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, **extra)
    return env


def asteps(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return asteps_process(*args, cwd=cwd, env=env)


def test_a_run_with_otel_sends_its_spans_and_metrics_and_exits_cleanly(
    receiver: Receiver, tmp_path: Path
) -> None:
    done = asteps(
        "run", PIPELINE, "--workflow-id", "customer-42", "--store", "memory://", "--otel",
        env=otel_env(receiver.endpoint),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    paths = {path for path, _, _ in receiver.posts}
    assert paths == {"/v1/traces", "/v1/metrics"}
    assert {ctype for _, ctype, _ in receiver.posts} == {"application/x-protobuf"}
    spans = receiver.traces()
    steps = receiver.steps()
    assert set(steps) == {
        "fetch.orders",
        "fetch.customers",
        "export.csv",
        "export.parquet",
        "report.email",
    }
    assert steps["report.email"]["attributes"]["asteps.step.reasons"] == ["Dep of export.parquet"]
    assert all(s["attributes"]["asteps.workflow_id"] == "customer-42" for s in steps.values())
    assert {s["name"] for s in spans} >= {"asteps.store.list_done", "asteps.store.mark_done"}
    assert {s["service"] for s in spans} == {"asteps"}
    assert receiver.metric_names() >= {
        "asteps.steps",
        "asteps.step.duration",
        "asteps.store.requests",
    }


@pytest.mark.parametrize(
    ("value", "said"),
    [("1e12", "longer than 3600 s: 3600 s is used"), ("abc", "not a number"),
     ("-1", "not a positive number"), ("0", "not a positive number"),
     ("nan", "not a positive number"), ("inf", "not a positive number")],
)  # fmt: skip
@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"])  # fmt: skip
def test_an_export_timeout_refused_or_too_long_is_said_once_and_the_run_ends_cleanly(
    receiver: Receiver, tmp_path: Path, variable: str, value: str, said: str
) -> None:
    """A huge timeout crashed the flush at exit (a thread cannot wait 1e12 s);
    the values refused fell back to 10 s, warned about by the SDK for some
    (twice) and silently for others. The per-signal timeouts were not checked
    at all: 1e12, -1 or nan made every export of that signal fail, and the
    warning at exit blamed the collector."""
    done = asteps(
        "run", PIPELINE, "--workflow-id", "t-1", "--store", "memory://", "--otel",
        "--log-format", "json",
        env=otel_env(receiver.endpoint, **{variable: value}),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    [warning] = [line for line in lines if line["level"] == "WARNING"]
    assert warning["logger"] == "asteps.cli"
    assert f"{variable}={value!r}" in warning["message"]
    assert said in warning["message"]
    assert "report.email" in receiver.steps()  # the spans still arrive
    assert "asteps.steps" in receiver.metric_names()


def test_the_service_name_comes_from_the_environment(receiver: Receiver, tmp_path: Path) -> None:
    done = asteps(
        "plan", PIPELINE, "--workflow-id", "c-1", "--store", "memory://", "--otel",
        env=otel_env(receiver.endpoint, OTEL_SERVICE_NAME="billing-exports"),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = receiver.traces()
    assert {s["service"] for s in spans} == {"billing-exports"}
    statuses = {s["attributes"]["asteps.step.status"] for s in receiver.steps().values()}
    assert statuses == {"planned"}


def test_a_failed_step_arrives_as_an_error_span(receiver: Receiver, tmp_path: Path) -> None:
    done = asteps(
        "run", PIPELINE, "--workflow-id", "c-1", "--store", "memory://", "--otel",
        "--param", "fail=export.csv",
        env=otel_env(receiver.endpoint),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    failed = receiver.steps()["export.csv"]
    assert failed["attributes"]["asteps.step.status"] == "failed"
    assert failed["status"] == 2  # STATUS_CODE_ERROR


def test_ctrl_c_still_flushes_what_was_recorded(receiver: Receiver, tmp_path: Path) -> None:
    (tmp_path / "holding.py").write_text(HOLDING_FLOW)
    started = tmp_path / "started"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "asteps", "run", "holding.py:flow", "--workflow-id", "c-1",
            "--store", "memory://", "--param", f"started={started}", "--otel",
            "--log-format", "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=otel_env(receiver.endpoint),
        cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not started.exists():  # a wait for the step, not a timed assertion
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    steps = receiver.steps()
    assert steps["fetch"]["attributes"]["asteps.step.status"] == "completed"
    assert "asteps.step.status" not in steps["hold"]["attributes"]  # cut short: no outcome
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert lines[-1]["level"] == "ERROR"
    assert lines[-1]["message"].startswith("error: interrupted")


def test_otel_without_the_extra_exits_2_naming_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if the extra were not installed\n"
        "from asteps.cli import main\n"
        f"main(['run', {PIPELINE!r}, '--workflow-id', 'c-1', '--store', 'memory://', '--otel'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "pip install 'asteps[otel]'" in done.stderr
    assert done.stdout == ""


def test_steps_mark_and_unmark_send_a_span_for_every_store_call(
    receiver: Receiver, tmp_path: Path
) -> None:
    store = f"file:{tmp_path / 'store'}"
    env = otel_env(receiver.endpoint)
    marked = asteps(
        "steps", "mark", "--workflow-id", "c-1", "export.csv", "--store", store, "--otel",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert marked.returncode == 0, marked.stderr
    unmarked = asteps(
        "steps", "unmark", "--workflow-id", "c-1", "export", "--yes", "--store", store, "--otel",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert unmarked.returncode == 0, unmarked.stderr
    names = [s["name"] for s in receiver.traces()]
    assert sorted(names) == [
        "asteps.store.list_done",
        "asteps.store.mark_done",
        "asteps.store.unmark",
    ]
    [unmark] = [s for s in receiver.traces() if s["name"] == "asteps.store.unmark"]
    assert unmark["attributes"]["asteps.store.prefix"] == "c-1/steps/"


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """A collector that accepts connections and never answers: the endpoint."""
    stop = threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            stop.wait()  # holds the connection, reads nothing, answers nothing

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="silent collector", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def nothing_listening() -> str:
    """An endpoint where connections are refused: a port just freed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("collector", ["silent_collector", "nothing_listening"])
def test_an_unreachable_collector_bounds_the_flush_and_says_what_was_dropped(
    request: pytest.FixtureRequest, collector: str, tmp_path: Path
) -> None:
    """The flush at exit sends spans and metrics side by side within the export
    timeout (1 s here), then drops what the collector did not take, in one
    warning. No wall-clock bound is asserted: the command ending while the
    silent collector still holds its connections is the bound, and what the
    warning says does not depend on the machine's speed (a collector that
    never answers takes nothing, however long it is given)."""
    endpoint = request.getfixturevalue(collector)
    done = asteps(
        "run", PIPELINE, "--workflow-id", "c-1", "--store", "memory://", "--otel",
        "--log-format", "json",
        env=otel_env(endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="1"),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # only JSON lines
    [warning] = [line for line in lines if line["logger"] == "asteps.cli"]
    assert warning["level"] == "WARNING"
    message = warning["message"]
    assert message.startswith("warning: telemetry dropped: ")
    assert "spans and the last metrics" in message
    assert f"not taken by {endpoint} within 1 s (OTEL_EXPORTER_OTLP_TIMEOUT)" in message
    assert [line for line in lines if line["logger"].startswith("opentelemetry")] == []
