"""Shared fixtures: the two async backends, counting stores, one real moto server
(S3, SWF) per session, and the helpers that open an SWF bridge or listener on it."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from asteps import EventBus, InvalidPrefix, MemoryStore, S3Store
from asteps.swf import SwfSignalBridge, SwfSignalListener, init_domain
from asteps.testing import FAKE_CREDENTIALS, MotoServer, moto_server

SWF_DOMAIN = "asteps-batch"
"""The domain the SWF worker, submit and CLI tests register (``domain``)."""


# -- the core on asyncio and on trio ----------------------------------------------
#
# The core (runner, canvas, bus, batch, memory and file stores) is anyio code, so
# its tests run on both backends through anyio's pytest plugin. To convert a test
# module, mark it at the top:
#
#     pytestmark = pytest.mark.anyio
#
# and every async test in it runs twice, ``test_x[asyncio]`` and ``test_x[trio]``
# (the ``anyio_backend`` fixture below); async fixtures run on the test's backend.
# Code that must stay on asyncio (anything through aioboto3: S3Store, the SWF
# bridge and listener, the moto fixtures ``s3``, ``swf``, ``domain``) is left
# unmarked, or, in a marked module, kept on asyncio by parametrizing the fixture
# away (test_stores_alike.py does it per store):
#
#     @pytest.mark.parametrize("anyio_backend", ["asyncio"])
#
# Use anyio in the tests themselves (anyio.Event, anyio.create_task_group,
# anyio.wait_all_tasks_blocked), never asyncio. Every other async test stays with
# pytest-asyncio (asyncio_mode=auto); the two plugins run in two passes (see
# pytest_collection_modifyitems below and the Makefile's pytest target).


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The backend a test marked ``anyio`` runs on: each in turn."""
    return str(request.param)


ANYIO_PASS = "pytest -p no:asyncio -m anyio"
"""The second pass of `make pytest`, where anyio's plugin alone runs the tests
marked ``anyio``, each on its backend."""


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.pluginmanager.has_plugin("asyncio"):
        return f"tests marked anyio are deselected in this pass: run them with `{ANYIO_PASS}`"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the tests marked ``anyio`` to the pass without pytest-asyncio.

    pytest-asyncio's auto mode claims every async test, including those marked
    ``anyio``, and would run ``test_x[trio]`` on asyncio: its documentation says
    that auto mode is for projects on asyncio alone. So `make pytest` runs the
    suite in two passes: this one, where such tests are deselected (the header
    says so), then ``ANYIO_PASS``, where anyio's plugin runs each of them on its
    backend (tests/test_bus.py checks that it does).
    """
    if not config.pluginmanager.has_plugin("asyncio"):
        return
    elsewhere = [item for item in items if item.get_closest_marker("anyio") is not None]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if item.get_closest_marker("anyio") is None]


ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])
"""For a test on S3: S3Store goes through aioboto3, which runs on asyncio only."""


def each_store_on_each_backend(
    metafunc: pytest.Metafunc, fixture: str, kinds: Iterable[str] = ("memory", "file", "s3")
) -> None:
    """Run a test given ``fixture`` on each store kind (its ``<fixture>_kind``),
    on both backends, but S3 on asyncio alone: a module's
    ``pytest_generate_tests`` calls this for each of its store fixtures."""
    if fixture in metafunc.fixturenames:
        metafunc.parametrize(
            ("anyio_backend", f"{fixture}_kind"),
            [
                pytest.param(backend, kind, id=f"{kind}-{backend}")
                for kind in kinds
                for backend in (("asyncio",) if kind == "s3" else ("asyncio", "trio"))
            ],
        )


# -- stores ----------------------------------------------------------------------


class CountingStore(MemoryStore):
    """A real MemoryStore that also counts the calls made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def list_done(self, prefix: str) -> set[str]:
        self.calls["list_done"] += 1
        return await super().list_done(prefix)

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        self.calls["mark_done"] += 1
        await super().mark_done(prefix, name, body)

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        self.calls["unmark"] += 1
        await super().unmark(prefix, names)


class FailingMarkStore(MemoryStore):
    """Lists fine, but every marker write fails, as a store that lost its disk."""

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        raise OSError("disk full")


class PrefixCheckingStore(MemoryStore):
    """A MemoryStore that refuses some prefixes, as S3Store refuses one with no
    room for its keys (``asteps.stores.ChecksPrefixes``), and counts the checks."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[str] = []

    def check_prefix(self, prefix: str) -> None:
        self.checked.append(prefix)
        if "refused" in prefix:
            raise InvalidPrefix(f"prefix {prefix!r} is refused")


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


# -- a real moto server over HTTP, for S3 and SWF ------------------------------


class RequestCounter:
    """Counts the API calls and HTTP sends an aiobotocore client makes, through
    botocore's own event hooks (nothing of the client is replaced)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sends = 0

    def attach(self, client: Any) -> RequestCounter:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}", self._on_call)
        client.meta.events.register(f"before-send.{service}", self._on_send)
        return self

    def _on_call(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[-1]] += 1

    def _on_send(self, **_: Any) -> None:
        self.sends += 1

    def clear(self) -> None:
        self.calls.clear()
        self.sends = 0


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def serial_moto() -> Iterator[MotoServer]:
    """A moto server answering one request at a time, so that its conditional
    writes are atomic, as S3's are: for tests where processes race for claims
    (the threaded one checks a condition and writes without a lock between,
    and under load two racers can both win; see ``moto_server``)."""
    with moto_server(serial=True) as server:
        yield server


def emptied(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """``server`` with nothing in it, and an environment that points at it."""
    server.reset()
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return server


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A moto server with nothing in it, and an environment that points at it."""
    return emptied(moto, monkeypatch)


async def registered(aws: MotoServer) -> str:
    """The domain and types asteps needs, registered on moto."""
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        await init_domain(client, SWF_DOMAIN)
    return SWF_DOMAIN


@pytest.fixture
async def domain(aws: MotoServer) -> str:
    """A fresh moto with the domain and types registered."""
    return await registered(aws)


@pytest.fixture
async def s3(aws: MotoServer) -> AsyncIterator[S3Store]:
    """An open S3Store on a fresh bucket 'steps'; its client's requests are counted
    in ``s3.counter`` from the moment the test starts."""
    async with S3Store("steps", endpoint_url=aws.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        store.counter = RequestCounter().attach(store.client)  # type: ignore[attr-defined]
        yield store


class SwfWorld:
    """A registered domain and workflow type on moto, with helpers to start and
    read executions through a plain aioboto3 SWF client."""

    domain = "asteps-test"

    def __init__(self, client: Any, endpoint_url: str) -> None:
        self.client = client
        self.endpoint_url = endpoint_url

    async def start(self, workflow_id: str) -> str:
        response = await self.client.start_workflow_execution(
            domain=self.domain, workflowId=workflow_id, workflowType={"name": "wt", "version": "1"}
        )
        return str(response["runId"])

    async def signals(self, workflow_id: str, run_id: str) -> list[tuple[str, str]]:
        history = await self.client.get_workflow_execution_history(
            domain=self.domain, execution={"workflowId": workflow_id, "runId": run_id}
        )
        return [
            (
                e["workflowExecutionSignaledEventAttributes"]["signalName"],
                e["workflowExecutionSignaledEventAttributes"].get("input"),
            )
            for e in history["events"]
            if e["eventType"] == "WorkflowExecutionSignaled"
        ]


@pytest.fixture
async def swf(aws: MotoServer) -> AsyncIterator[SwfWorld]:
    import aioboto3

    async with aioboto3.Session().client("swf", endpoint_url=aws.endpoint_url) as client:
        await client.register_domain(
            name=SwfWorld.domain, workflowExecutionRetentionPeriodInDays="1"
        )
        await client.register_workflow_type(
            domain=SwfWorld.domain,
            name="wt",
            version="1",
            defaultTaskList={"name": "tl"},
            defaultExecutionStartToCloseTimeout="3600",
            defaultTaskStartToCloseTimeout="60",
            defaultChildPolicy="TERMINATE",
        )
        yield SwfWorld(client, aws.endpoint_url)


def bridge(world: SwfWorld, bus: EventBus, executions: Any, **kw: Any) -> SwfSignalBridge:
    """A bridge from ``bus`` to ``executions`` on the world's domain."""
    return SwfSignalBridge(
        bus, domain=world.domain, executions=executions, endpoint_url=world.endpoint_url, **kw
    )


def listener(world: SwfWorld, bus: EventBus, workflow_id: str, **kw: Any) -> SwfSignalListener:
    """A listener that publishes on ``bus`` what ``workflow_id`` is signalled."""
    return SwfSignalListener(
        bus, domain=world.domain, workflow_id=workflow_id, endpoint_url=world.endpoint_url, **kw
    )


class FlakyProxy:
    """A real HTTP proxy on a loopback port in front of moto that answers the
    next N requests of a given method with 503 SlowDown, as S3 does under load,
    forwards the next N of a given method and then drops the connection
    unanswered (applied, its answer lost), or holds the next N requests of a
    given ``X-Amz-Target`` (an SWF operation) unanswered until it closes, as a
    connection that hangs; it forwards
    everything else unchanged, and counts the requests of each target it
    received (``received``) and forwarded (``forwarded``)."""

    def __init__(self, target: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.failures_left = 0
        self.fail_method = "PUT"
        self.failed = 0
        self.drops_left = 0
        self.drop_method = "PUT"
        self.dropped = 0
        self.holds_left = 0
        self.hold_target = ""
        self.received: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        target_url = urlsplit(target)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 answers "Expect: 100-continue", which botocore sends with
            # every PutObject body; with HTTP/1.0 the client would wait for it.
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                amz_target = self.headers.get("X-Amz-Target", "")
                with proxy._lock:
                    proxy.received[amz_target] += 1
                    hold = amz_target == proxy.hold_target and proxy.holds_left > 0
                    if hold:
                        proxy.holds_left -= 1
                if hold:
                    # No answer until the proxy closes; then the connection drops.
                    proxy._closing.wait()
                    self.close_connection = True
                    return
                if self.command == proxy.fail_method and proxy.failures_left > 0:
                    proxy.failures_left -= 1
                    proxy.failed += 1
                    payload = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                        b"<Message>Please reduce your request rate.</Message></Error>"
                    )
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                with proxy._lock:
                    drop = self.command == proxy.drop_method and proxy.drops_left > 0
                    if drop:
                        proxy.drops_left -= 1
                upstream = http.client.HTTPConnection(target_url.hostname, target_url.port)
                skip = ("host", "expect")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                if drop:  # moto applied it; the client never hears so
                    upstream.close()
                    with proxy._lock:
                        proxy.dropped += 1
                    self.close_connection = True
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()
                with proxy._lock:
                    proxy.forwarded[amz_target] += 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail_next(self, count: int, method: str = "PUT") -> None:
        self.failures_left, self.fail_method = count, method

    def drop_next(self, count: int, method: str = "PUT") -> None:
        """Forward the next ``count`` requests of ``method`` to moto, then close
        their connections without an answer: applied, but the client cannot
        know it (botocore retries them)."""
        with self._lock:
            self.drops_left, self.drop_method = count, method

    def hold_next(self, count: int, target: str) -> None:
        """Leave the next ``count`` requests whose ``X-Amz-Target`` is ``target``
        (``SimpleWorkflowService.RecordActivityTaskHeartbeat``, say) unanswered
        until the proxy closes."""
        with self._lock:
            self.holds_left, self.hold_target = count, target

    def close(self) -> None:
        self._closing.set()  # release the held requests: no thread is left waiting
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def flaky(aws: MotoServer) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(aws.endpoint_url)
    yield proxy
    proxy.close()


# -- the command line ------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Runs the CLI in a temporary directory, with the default store there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASTEPS_STORE", raising=False)
    return CliRunner()


def invoke(cli: CliRunner, *args: str, input: str | None = None) -> Result:
    """``asteps ARGS`` in process; an exception fails the test as itself."""
    from asteps.cli import main

    return cli.invoke(main, list(args), input=input, catch_exceptions=False)


def asteps_process(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, **options: Any
) -> subprocess.CompletedProcess[str]:
    """``python -m asteps ARGS`` in a process of its own, as a user runs it
    (``options`` go to ``subprocess.run``, a ``preexec_fn`` say)."""
    return subprocess.run(
        [sys.executable, "-m", "asteps", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
        **options,
    )
