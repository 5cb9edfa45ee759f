"""The harnesses of asteps.testing that benchmarks and tests build on."""

from __future__ import annotations

import asyncio
import errno
import logging
import threading

import pytest

from asteps import InvalidPrefix, MemoryStore, Runner, S3Store
from asteps._telemetry import store_kind
from asteps.testing import LatencyProxy, LatencyStore, MotoServer, moto_server

from .conftest import PrefixCheckingStore


async def test_s3_through_the_latency_proxy_works_and_each_request_is_held_back(
    aws: MotoServer,
) -> None:
    with LatencyProxy(aws.endpoint_url, latency=0.001) as proxy:
        async with S3Store("steps", endpoint_url=proxy.endpoint_url) as store:
            await store.client.create_bucket(Bucket="steps")
            await store.mark_done("w1/steps/", "a", {"run_id": "r"})
            assert await store.list_done("w1/steps/") == {"a"}
            assert await store.read_marker("w1/steps/", "a") == {"run_id": "r"}
    assert proxy.requests >= 4  # bucket, put (its body may count again), list, get


async def test_the_latency_store_delays_every_call_and_keeps_to_its_limit() -> None:
    store = LatencyStore(latency=0.001, distribution="exponential", max_in_flight=2, seed=3)
    runner = Runner(store, "w1")
    await runner.step("a", lambda: None)
    assert await store.inner.list_done("w1/steps/") == {"a"}
    assert store.calls == {"list_done": 1, "mark_done": 1}
    assert store.peak_in_flight == 1


def test_a_runner_over_the_latency_store_has_the_wrapped_store_check_its_prefix() -> None:
    """A runner checks its prefix once, when it is built, with a store that
    refuses some (``ChecksPrefixes``, as S3Store does): over a LatencyStore
    (or a subclass of it) it is refused as over the bare store, and over a
    store that checks nothing, every prefix passes."""
    picky = PrefixCheckingStore()

    class Mine(LatencyStore):
        pass

    for store in (picky, LatencyStore(picky, latency=0), Mine(picky, latency=0)):
        with pytest.raises(InvalidPrefix, match="is refused"):
            Runner(store, "refused")
        Runner(store, "wf")
    assert picky.checked == ["refused/steps/", "wf/steps/"] * 3
    Runner(LatencyStore(MemoryStore(), latency=0), "refused")
    Runner(LatencyStore(latency=0), "refused")


def test_a_latency_store_is_named_latency_in_telemetry_whatever_it_wraps() -> None:
    """The store's kind on spans and metrics (``asteps.store.kind``) is
    ``latency``, over a store that checks prefixes as over one that does not."""
    assert store_kind(LatencyStore(PrefixCheckingStore(), latency=0)) == "latency"
    assert store_kind(LatencyStore(latency=0)) == "latency"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency": -1}, "latency"),
        ({"latency": 0.01, "distribution": "pareto"}, "distribution"),
        ({"latency": 0.01, "max_in_flight": 0}, "max_in_flight"),
    ],
)
def test_the_latency_store_refuses_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LatencyStore(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("serial", [False, True])
def test_a_moto_server_leaves_the_werkzeug_logger_as_it_found_it(serial: bool) -> None:
    # The harness quiets werkzeug's log of every request while it runs, and
    # says it touches no global state: the level is the test's again after.
    logger = logging.getLogger("werkzeug")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with moto_server(serial=serial) as server:
            assert logger.level == logging.WARNING
            server.reset()
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(previous)


def test_a_latency_proxy_that_cannot_listen_raises_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def cannot_listen(*args: object, **kwargs: object) -> asyncio.Server:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(asyncio, "start_server", cannot_listen)
    proxy = LatencyProxy("http://127.0.0.1:9", latency=0)
    raised: list[BaseException] = []

    def start() -> None:
        try:
            proxy.start()
        except BaseException as exc:
            raised.append(exc)

    starting = threading.Thread(target=start, daemon=True)
    starting.start()
    starting.join(10)
    assert not starting.is_alive(), "start() waited for ever for a server that failed"
    assert len(raised) == 1
    assert isinstance(raised[0], OSError)
    assert proxy._thread is None  # nothing left running


@pytest.mark.parametrize("serial", [False, True])
def test_a_moto_server_starts_empty_whatever_an_earlier_one_left(serial: bool) -> None:
    # moto keeps its buckets per process, shared by every server in it: a
    # block that found an earlier block's "steps" bucket made the testing
    # guide's own example fail when a test before it had left markers there.
    async def put(server: MotoServer) -> None:
        session = server.session()
        async with S3Store("steps", endpoint_url=server.endpoint_url, session=session) as store:
            await store.client.create_bucket(Bucket="steps")
            await store.mark_done("wf/steps/", "left", {"run_id": "r"})

    async def buckets(server: MotoServer) -> list[str]:
        async with server.session().client("s3", endpoint_url=server.endpoint_url) as client:
            return [b["Name"] for b in (await client.list_buckets())["Buckets"]]

    with moto_server() as earlier:
        asyncio.run(put(earlier))
    with moto_server(serial=serial) as server:
        assert asyncio.run(buckets(server)) == []


def test_a_moto_server_starts_without_the_iam_checks_an_earlier_one_left_on() -> None:
    # moto's IAM switch is per process too: a block (or a test) that turned it
    # on and ended without turning it off left every later block refusing
    # moto's own fake credentials, bucket creation included.
    async def create(server: MotoServer) -> None:
        async with server.session().client("s3", endpoint_url=server.endpoint_url) as client:
            await client.create_bucket(Bucket="steps")

    with moto_server() as earlier:
        earlier.enforce_iam()
    with moto_server() as server:
        asyncio.run(create(server))  # refused (InvalidAccessKeyId) before
