"""examples/webhook_service.py as a real service: two uvicorn replicas on
loopback ports over one moto S3 bucket, each webhook delivered to both at
the same moment; each step's work runs once. With telemetry on, each step's
span is a child of its HTTP request's span."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import httpx
import pytest

import asteps
from asteps import MemoryStore, Runner
from asteps.testing import FAKE_CREDENTIALS, MotoServer

from .conftest import emptied

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
STEPS = ("validate", "fetch", "notify")
BUCKET = "webhook-markers"


class Replica:
    """A uvicorn process serving the example on a loopback socket the test
    bound (no port can be taken in between); its output goes to a file."""

    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.log = root / f"{name}.log"
        fd = self.sock.fileno()
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "webhook_service:create_app",
                    *("--factory", "--app-dir", str(EXAMPLES), "--fd", str(fd)),
                    *("--log-level", "warning", "--no-access-log"),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=[fd],
            )

    async def ready(self, client: httpx.AsyncClient, timeout: float = 60) -> None:
        """Poll ``/health`` until it answers (the store is open)."""
        with anyio.fail_after(timeout):
            while True:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.sock.close()


@pytest.fixture
def aws(serial_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The replicas race for each step's claim: moto answering one request at a
    time, so that its conditional writes are atomic, as S3's are. On the
    threaded moto, under load, both replicas once ran ``validate`` for one
    order: it checks a write's condition and writes with no lock between, so
    two racers can both create one claim, which S3 never allows."""
    return emptied(serial_moto, monkeypatch)


@pytest.fixture
def bucket(aws: MotoServer) -> str:
    s3 = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    """Start replicas with ``replicas.append(Replica(...))``; all are stopped after."""
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


def service_env(aws: MotoServer, effects: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **FAKE_CREDENTIALS, **extra}
    env.pop("AWS_PROFILE", None)
    env.update(
        WEBHOOK_BUCKET=BUCKET,
        WEBHOOK_S3_ENDPOINT=aws.endpoint_url,
        WEBHOOK_SIDE_EFFECTS=str(effects),
        WEBHOOK_LEASE="10",
    )
    return env


async def deliver_twice(
    client: httpx.AsyncClient, urls: list[str], ids: list[str], *, at_once: int = 32
) -> dict[str, list[httpx.Response]]:
    """Each id's webhook delivered to every url at the same moment (gathered),
    ``at_once`` ids at a time; the responses by id."""
    answers: dict[str, list[httpx.Response]] = {}
    slots = anyio.Semaphore(at_once)

    async def post(wid: str, url: str, headers: dict[str, str]) -> None:
        answers[wid].append(await client.post(f"{url}/webhook/{wid}", headers=headers))

    async def both(wid: str) -> None:
        async with slots:
            answers[wid] = []
            headers = {"traceparent": traceparent(wid)}
            async with anyio.create_task_group() as tg:
                for url in urls:
                    tg.start_soon(post, wid, url, headers)

    async with anyio.create_task_group() as tg:
        for wid in ids:
            tg.start_soon(both, wid)
    return answers


def traceparent(wid: str) -> str:
    """A W3C traceparent whose trace id is derived from the workflow id."""
    trace_id = hashlib.sha256(wid.encode()).hexdigest()[:32]
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def side_effects(path: Path) -> Counter[str]:
    return Counter(path.read_text().splitlines() if path.exists() else [])


def http_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=64)
    return httpx.AsyncClient(timeout=60, limits=limits)


async def test_two_replicas_given_each_webhook_at_once_run_each_step_once(
    aws: MotoServer, bucket: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    effects = tmp_path / "effects"
    env = service_env(aws, effects)
    replicas.extend(Replica(tmp_path, name, env) for name in ("one", "two"))
    ids = [f"order-{i:03}" for i in range(200)]
    async with http_client() as client:
        for replica in replicas:
            await replica.ready(client)
        with anyio.fail_after(600):  # only a hang gets near it (moto answers one at a time)
            answers = await deliver_twice(client, [r.url for r in replicas], ids)

    for wid, responses in answers.items():
        assert [r.status_code for r in responses] == [200, 200], (wid, responses[0].text)
        statuses = Counter(s for r in responses for s in r.json()["steps"].values())
        assert statuses == {"completed": 3, "skipped": 3}, (wid, [r.json() for r in responses])
    assert side_effects(effects) == Counter(f"{wid} {step}" for wid in ids for step in STEPS)


async def test_a_bad_workflow_id_in_the_path_is_refused_with_400(
    aws: MotoServer, bucket: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    effects = tmp_path / "effects"
    replicas.append(Replica(tmp_path, "one", service_env(aws, effects)))
    async with http_client() as client:
        await replicas[0].ready(client)
        for bad in (".hidden", "x" * 300, "tab%09id", "%E2%80%AE"):
            answer = await client.post(f"{replicas[0].url}/webhook/{bad}")
            assert answer.status_code == 400, (bad, answer.text)
            assert "workflow id" in answer.json()["error"]
        assert (await client.get(f"{replicas[0].url}/webhook/x")).status_code == 405
    assert not effects.exists()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"WEBHOOK_BUCKET": ""}, "WEBHOOK_BUCKET"),
        ({"WEBHOOK_BUCKET": "Not_A_Bucket"}, "WEBHOOK_BUCKET"),
        ({"WEBHOOK_S3_ENDPOINT": "ftp://somewhere"}, "not an endpoint URL"),
        ({"WEBHOOK_SIDE_EFFECTS": ""}, "WEBHOOK_SIDE_EFFECTS is not set"),
        ({"WEBHOOK_SIDE_EFFECTS": "/no/such/dir/effects"}, "not a writable directory"),
        ({"WEBHOOK_LEASE": "nan"}, "WEBHOOK_LEASE"),
        ({"WEBHOOK_LEASE": "inf"}, "WEBHOOK_LEASE"),
        ({"WEBHOOK_LEASE": "0"}, "WEBHOOK_LEASE"),
    ],
)
def test_a_bad_setting_stops_the_service_at_start_up_naming_it(
    tmp_path: Path, change: dict[str, str], says: str
) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import webhook_service
    finally:
        sys.path.remove(str(EXAMPLES))
    env = {
        "WEBHOOK_BUCKET": BUCKET,
        "WEBHOOK_S3_ENDPOINT": "http://127.0.0.1:9",
        "WEBHOOK_SIDE_EFFECTS": str(tmp_path / "effects"),
        **change,
    }
    with pytest.raises((webhook_service.ConfigError, asteps.StoreError), match=says):
        webhook_service.create_app(env)


# -- telemetry ---------------------------------------------------------------------


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def traced_replicas(
    aws: MotoServer, tmp_path: Path, replicas: list[Replica], ids: list[str]
) -> tuple[dict[str, list[httpx.Response]], list[dict[str, Any]], Path]:
    """Two replicas with telemetry on, each id delivered to both; the answers,
    every span both wrote, and the side-effects file."""
    effects = tmp_path / "effects"
    for name in ("one", "two"):
        env = service_env(aws, effects, WEBHOOK_TRACES=str(tmp_path / f"{name}.spans"))
        replicas.append(Replica(tmp_path, name, env))
    async with http_client() as client:
        for replica in replicas:
            await replica.ready(client)
        with anyio.fail_after(600):  # only a hang gets near it
            answers = await deliver_twice(client, [r.url for r in replicas], ids)
    for replica in replicas:
        replica.stop()  # a span is written when it ends: all have ended now
    found = spans(tmp_path / "one.spans") + spans(tmp_path / "two.spans")
    return answers, found, effects


async def test_with_telemetry_each_step_span_is_a_child_of_its_request_span(
    aws: MotoServer, bucket: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    ids = [f"traced-{i}" for i in range(5)]
    _, found, _ = await traced_replicas(aws, tmp_path, replicas, ids)

    servers = [s for s in found if s["kind"] == "SERVER"]
    assert {s["name"] for s in servers} == {"GET /health", "POST /webhook/{workflow_id}"}
    requests = {s["span_id"]: s for s in servers if s["name"].startswith("POST")}
    assert len(requests) == 2 * len(ids)
    step_spans = [s for s in found if s["name"] == "asteps.step"]
    # Every request has step spans, and every step span has a request.
    assert {s["parent_span_id"] for s in step_spans} == set(requests)
    for step in step_spans:
        request = requests[step["parent_span_id"]]  # the step's parent is its request
        wid = step["attributes"]["asteps.workflow_id"]
        assert request["attributes"]["url.path"] == f"/webhook/{wid}"
        # ... whose trace is the caller's, from its traceparent header.
        assert request["trace_id"] == step["trace_id"] == traceparent(wid).split("-")[1]


async def test_with_telemetry_exclusive_steps_still_run_once(
    aws: MotoServer, bucket: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    ids = [f"traced-{i}" for i in range(5)]
    answers, _, effects = await traced_replicas(aws, tmp_path, replicas, ids)
    for wid, responses in answers.items():
        assert [r.status_code for r in responses] == [200, 200], (wid, responses[0].text)
    assert side_effects(effects) == Counter(f"{wid} {step}" for wid in ids for step in STEPS)


@pytest.fixture
def instrumented() -> Iterator[None]:
    from opentelemetry.sdk.trace import TracerProvider

    asteps.instrument(tracer_provider=TracerProvider())
    try:
        yield
    finally:
        asteps.uninstrument()


@pytest.mark.usefixtures("instrumented")
async def test_an_exclusive_step_runs_with_telemetry_on() -> None:
    runner = Runner(MemoryStore(), "w1", exclusive=True)
    outcome = await runner.step("a", lambda: 1)
    assert (outcome.status, outcome.result) == ("completed", 1)
