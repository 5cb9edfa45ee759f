"""S3Store against a real moto server over HTTP, through aioboto3."""

from __future__ import annotations

import json
import math
import socket
import struct
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pytest
from aiobotocore.config import AioConfig

from asteps import (
    BatchRun,
    MarkDoneError,
    Runner,
    S3Store,
    StoreError,
    StoreUnreachable,
    UnmarkError,
)
from asteps._json import MAX_BODY_BYTES
from asteps._names import format_prefix
from asteps.errors import InvalidPrefix, MarkerBodyError
from asteps.stores import list_done_many, unmark_matching
from asteps.stores._s3_args import parse_bucket

PREFIX = "wf/steps/"


async def put_markers(store: S3Store, prefix: str, names: list[str]) -> None:
    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(store.mark_done, prefix, name, {"run_id": "old"})


async def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


async def test_markers_use_simpleflows_key_and_body(s3: S3Store) -> None:
    await Runner(s3, "wf", run_id="r1", version="7").step("export.csv", lambda: 1)
    obj = await s3.client.get_object(Bucket="steps", Key="wf/steps/export.csv")
    body = json.loads(await obj["Body"].read())
    assert body == {"run_id": "r1", "workflow_id": "wf", "version": "7"}


async def test_a_workflow_run_costs_its_listing_pages_plus_one_put_per_executed_step(
    s3: S3Store,
) -> None:
    old = [f"old.{i:04d}" for i in range(1195)]
    done = [f"done.{i}" for i in range(5)]
    await put_markers(s3, PREFIX, old + done)
    s3.counter.clear()  # type: ignore[attr-defined]

    runner = Runner(s3, "wf")
    for name in done:
        assert (await runner.step(name, lambda: None)).status == "skipped"
    for i in range(3):
        assert (await runner.step(f"new.{i}", lambda: None)).status == "completed"
    for name in done:  # a second pass over done steps still costs nothing
        await runner.step(name, lambda: None)

    pages = math.ceil(len(old + done) / 1000)
    assert pages == 2
    assert dict(s3.counter.calls) == {"ListObjectsV2": pages, "PutObject": 3}  # type: ignore[attr-defined]
    assert s3.counter.sends == pages + 3  # type: ignore[attr-defined]


async def test_concurrent_steps_of_one_runner_list_once(s3: S3Store) -> None:
    runner = Runner(s3, "wf")
    await anyio.lowlevel.checkpoint()
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(runner.step, f"s{i}", lambda: None)
    assert dict(s3.counter.calls) == {"ListObjectsV2": 1, "PutObject": 20}  # type: ignore[attr-defined]


async def test_a_marker_written_the_simpleflow_way_counts_as_done(
    s3: S3Store, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simpleflow.step.tasks import MarkStepDoneTask

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.endpoint_url)
    await anyio.to_thread.run_sync(MarkStepDoneTask("steps", "wf/steps", "crawl.pages").execute)
    ran: list[str] = []
    outcome = await Runner(s3, "wf").step("crawl.pages", lambda: ran.append("x"))
    assert (outcome.status, ran) == ("skipped", [])


async def test_a_marker_written_by_asteps_is_listed_by_simpleflow(
    s3: S3Store, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simpleflow.step.tasks import GetStepsDoneTask

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.endpoint_url)
    runner = Runner(s3, "wf")
    for name in ("a", "a.b", "report"):
        await runner.step(name, lambda: None)
    listed = await anyio.to_thread.run_sync(GetStepsDoneTask("steps", "wf/steps").execute)
    assert sorted(listed) == ["a", "a.b", "report"]


async def test_list_done_many_lists_every_prefix(s3: S3Store) -> None:
    for i in range(30):
        await s3.mark_done(f"w{i}/steps/", f"s{i % 3}", {})
    got = await list_done_many(
        s3, [f"w{i}/steps/" for i in range(30)] + ["nobody/steps/"], concurrency=8
    )
    assert got["w4/steps/"] == {"s1"}
    assert got["nobody/steps/"] == frozenset()
    assert len(got) == 31
    assert s3.counter.calls["ListObjectsV2"] == 31  # type: ignore[attr-defined]


async def test_unmark_by_pattern_is_hierarchical(s3: S3Store) -> None:
    await put_markers(s3, PREFIX, ["a", "a.b", "a.b.c", "ab", "b"])
    assert await unmark_matching(s3, PREFIX, "a") == ["a", "a.b", "a.b.c"]
    assert await s3.list_done(PREFIX) == {"ab", "b"}


async def test_unmark_deletes_in_batches_of_a_thousand(s3: S3Store) -> None:
    names = [f"n.{i:04d}" for i in range(2001)]
    await put_markers(s3, PREFIX, names)
    s3.counter.clear()  # type: ignore[attr-defined]
    await s3.unmark(PREFIX, names)
    assert s3.counter.calls["DeleteObjects"] == 3  # type: ignore[attr-defined]
    assert await s3.list_done(PREFIX) == set()


async def test_unmark_tries_every_batch_and_names_the_markers_it_did_not_remove(
    s3: S3Store, flaky: Any
) -> None:
    """A failed batch does not stop the others, and the error that follows
    names every marker left, so the caller knows what was removed."""
    from .conftest import RequestCounter

    names = [f"n.{i:04d}" for i in range(2001)]
    await put_markers(s3, PREFIX, names)
    config = AioConfig(retries={"total_max_attempts": 1})  # a refusal is final
    async with S3Store("steps", endpoint_url=flaky.endpoint_url, client_config=config) as store:
        counter = RequestCounter().attach(store.client)
        flaky.fail_next(1, "POST")  # the first DeleteObjects: 503 SlowDown
        with pytest.raises(UnmarkError) as info:  # a StoreError, as before
            await store.unmark(PREFIX, names)
    assert counter.calls["DeleteObjects"] == 3
    assert await s3.list_done(PREFIX) == set(names[:1000])
    error = info.value
    assert error.not_removed == names[:1000]
    assert isinstance(error.__cause__, StoreError)
    assert error.prefix == PREFIX
    assert str(error) == (
        "1,000 of 2,001 marker(s) in bucket 'steps' under prefix 'wf/steps/' were not "
        "removed (the others were): 1,000 as cannot remove markers from bucket 'steps' "
        "under prefix 'wf/steps/': S3 answered SlowDown: Please reduce your request rate.; "
        "not removed: 'n.0000', 'n.0001', 'n.0002', 'n.0003', 'n.0004' and 995 more "
        "(.not_removed lists them all)"
    )


async def test_an_unmark_stops_at_the_first_batch_when_the_store_cannot_be_reached(
    aws: Any,  # for its credentials
) -> None:
    """No connection to the endpoint: after the client's own retries of the
    first batch, the other batches are not tried (each would wait through the
    same retries to fail the same way). The error names every marker as not
    removed, says why, and has the StoreUnreachable in ``__cause__``. A
    refusal of one batch goes on to the next instead (the test above)."""
    from .conftest import RequestCounter

    names = [f"n.{i:04d}" for i in range(2001)]  # three batches
    config = AioConfig(retries={"total_max_attempts": 2})
    endpoint = f"http://127.0.0.1:{await closed_port()}"
    async with S3Store("steps", endpoint_url=endpoint, client_config=config) as store:
        counter = RequestCounter().attach(store.client)
        with pytest.raises(UnmarkError) as info:
            await store.unmark(PREFIX, names)
    assert counter.calls["DeleteObjects"] == 1
    assert counter.sends == 2  # the first batch's two attempts
    error = info.value
    assert error.not_removed == names
    assert isinstance(error.__cause__, StoreUnreachable)
    message = str(error)
    assert message.startswith(
        "none of the 2,001 marker(s) in bucket 'steps' under prefix 'wf/steps/' is known to be "
        "removed"
    )
    assert "1,001 as not tried, as the store could not be reached; " in message
    assert (
        f"1,000 as cannot remove markers from bucket 'steps' under prefix 'wf/steps/': "
        f"endpoint {endpoint} is unreachable" in message
    )


async def test_a_connection_broken_once_the_request_was_sent_is_no_unreachable_store(
    aws: Any,  # for its credentials
) -> None:
    """The endpoint takes the connection and the request, then resets it (a
    load balancer, a crashing server): the request may have been applied, and
    the next one may go through. That is no StoreUnreachable: every batch is
    tried, and the message says the connection broke, not that the endpoint
    is unreachable, nor that none was removed."""
    requests: list[bytes] = []

    async def take_then_reset(stream: anyio.abc.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive()
        requests.append(head.split(b" ", 1)[0])
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()  # with no linger: a reset

    names = [f"n.{i:04d}" for i in range(2001)]  # three batches
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    endpoint = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
    config = AioConfig(retries={"total_max_attempts": 1})
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, take_then_reset)
        async with S3Store("steps", endpoint_url=endpoint, client_config=config) as store:
            with pytest.raises(UnmarkError) as info:
                await store.unmark(PREFIX, names)
        tg.cancel_scope.cancel()
    assert requests == [b"POST"] * 3  # every batch was tried
    error = info.value
    assert error.not_removed == names
    assert isinstance(error.__cause__, StoreError)
    assert not isinstance(error.__cause__, StoreUnreachable)
    message = str(error)
    assert "is unreachable" not in message
    assert "is known to be removed" in message


async def test_a_proxy_that_cannot_be_reached_is_an_unreachable_store(
    aws: Any,  # for its credentials
) -> None:
    """Every request goes through the proxy: when no connection to it can be
    made, the store cannot be reached, and an unmark stops at the first batch
    (the message says to check the proxy)."""
    from .conftest import RequestCounter

    names = [f"n.{i:04d}" for i in range(2001)]  # three batches
    proxy = f"http://127.0.0.1:{await closed_port()}"
    config = AioConfig(retries={"total_max_attempts": 1}, proxies={"http": proxy})
    endpoint = f"http://127.0.0.1:{await closed_port()}"  # never reached: the proxy is first
    async with S3Store("steps", endpoint_url=endpoint, client_config=config) as store:
        counter = RequestCounter().attach(store.client)
        with pytest.raises(UnmarkError) as info:
            await store.unmark(PREFIX, names)
    assert counter.calls["DeleteObjects"] == 1
    assert isinstance(info.value.__cause__, StoreUnreachable)
    assert "check the proxy" in str(info.value)


async def test_server_side_encryption_applies_to_every_marker(aws: Any) -> None:
    async with S3Store("steps", endpoint_url=aws.endpoint_url, sse="AES256") as store:
        await store.client.create_bucket(Bucket="steps")
        await Runner(store, "wf").step("a", lambda: None)
        head = await store.client.head_object(Bucket="steps", Key="wf/steps/a")
    assert head["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize(
    ("sse", "kms_key_id"), [("AES256", None), ("aws:kms", "alias/markers")], ids=["aes", "kms"]
)
async def test_server_side_encryption_applies_to_every_claim_write_too(
    aws: Any, sse: str, kms_key_id: str | None
) -> None:
    """A bucket policy that denies unencrypted PutObject denies claims too:
    the claim of an exclusive step is written as encrypted as its marker."""
    async with S3Store(
        "steps", endpoint_url=aws.endpoint_url, sse=sse, sse_kms_key_id=kms_key_id
    ) as store:
        await store.client.create_bucket(Bucket="steps")
        key = ".asteps-claims/" + PREFIX + "a"
        heads = []
        token = await store.create_claim(PREFIX, "a", {"owner": "me"})
        assert token is not None
        heads.append(await store.client.head_object(Bucket="steps", Key=key))
        assert await store.replace_claim(PREFIX, "a", token, {"owner": "me"}) is not None
        heads.append(await store.client.head_object(Bucket="steps", Key=key))
    assert [head.get("ServerSideEncryption") for head in heads] == [sse, sse]
    assert [head.get("SSEKMSKeyId") for head in heads] == [kms_key_id, kms_key_id]


async def test_an_unknown_bucket_names_bucket_and_prefix(aws: Any) -> None:
    async with S3Store("no-such-bucket", endpoint_url=aws.endpoint_url) as store:
        with pytest.raises(StoreError, match=r"'no-such-bucket'.*'wf/steps/'.*does not exist"):
            await Runner(store, "wf").step("a", lambda: None)


async def test_an_unreachable_endpoint_says_what_to_check(aws: Any) -> None:
    config = AioConfig(retries={"max_attempts": 1}, connect_timeout=1)
    async with S3Store(
        "steps", endpoint_url=f"http://127.0.0.1:{await closed_port()}", client_config=config
    ) as store:
        with pytest.raises(StoreError, match="unreachable; check endpoint_url"):
            await store.list_done(PREFIX)


async def test_a_request_that_never_answers_says_which_timeout_to_check(flaky: Any) -> None:
    config = AioConfig(read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1})
    async with S3Store("steps", endpoint_url=flaky.endpoint_url, client_config=config) as store:
        await store.client.create_bucket(Bucket="steps")
        flaky.hold_next(1, "")  # S3 requests have no X-Amz-Target: the next one hangs
        with pytest.raises(StoreError) as info:
            await store.list_done(PREFIX)
    message = str(info.value)
    assert "bucket 'steps' under prefix 'wf/steps/'" in message
    assert f"endpoint {flaky.endpoint_url} did not answer within 1 s (read_timeout)" in message
    assert "check the endpoint and the network, or raise read_timeout" in message


async def test_a_marker_that_cannot_be_written_is_reported_with_the_result(s3: S3Store) -> None:
    async def work_then_lose_the_bucket() -> str:
        await s3.client.delete_bucket(Bucket="steps")
        return "exported 12 rows"

    with pytest.raises(MarkDoneError) as info:
        await Runner(s3, "wf").step("export", work_then_lose_the_bucket)
    assert info.value.result == "exported 12 rows"
    assert isinstance(info.value.__cause__, StoreError)
    assert "'steps'" in str(info.value.__cause__)


async def test_a_kept_result_of_200_kb_is_read_back_whole_and_the_step_skipped(
    s3: S3Store,
) -> None:
    # Over what one read of aiobotocore's body returns (what is buffered, about
    # 64 KB), under the default max_result_bytes (256 KiB).
    big = "x" * 200_000
    first = await Runner(s3, "wf").step("export", lambda: big, keep_result=str)
    assert first.status == "completed"
    again = await Runner(s3, "wf").step("export", lambda: "recomputed", keep_result=str)
    assert again.status == "skipped"
    assert "result kept" in again.reasons
    assert again.result == big


async def test_a_marker_body_over_the_bound_is_refused_as_too_large(s3: S3Store) -> None:
    # A JSON string cut anywhere is not JSON: only a body read to the bound
    # can say it is too large.
    raw = b'{"result": "' + b"x" * MAX_BODY_BYTES + b'"}'
    await s3.client.put_object(Bucket="steps", Key=PREFIX + "n", Body=raw)
    with pytest.raises(MarkerBodyError, match=f"is refused: it is over {MAX_BODY_BYTES:,} bytes"):
        await s3.read_marker(PREFIX, "n")


async def test_a_store_used_before_it_is_opened_says_so() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await S3Store("steps").list_done(PREFIX)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("my-bucket", ("my-bucket", None)),
        (
            "s3.eu-west-1.amazonaws.com/my-bucket",
            ("my-bucket", "https://s3.eu-west-1.amazonaws.com"),
        ),
        ("http://127.0.0.1:5000/bkt", ("bkt", "http://127.0.0.1:5000")),
    ],
)
def test_bucket_accepts_simpleflows_host_slash_bucket_form(given: str, expected: Any) -> None:
    assert parse_bucket(given) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"sse": "rot13"}, "sse must be"),
        ({"sse_kms_key_id": "k"}, "sse_kms_key_id needs sse='aws:kms'"),
        ({"endpoint_url": "notaurl"}, "endpoint_url 'notaurl' is not an endpoint URL"),
        ({"endpoint_url": "http://host:port"}, "endpoint_url .* is not an endpoint URL"),
        ({"region_name": "bad region"}, "region_name 'bad region' is not a region name"),
        ({"max_concurrency": 0}, "max_concurrency must be from 1 to 1,024"),
        ({"key_root": "a/../b"}, "key root 'a/../b' has an empty, '.' or '..' segment"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        S3Store("bkt", **arguments)


async def test_a_bad_region_in_the_environment_is_a_store_error_and_closes_the_store(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "bad region")
    store = S3Store("steps", endpoint_url=aws.endpoint_url)
    with pytest.raises(StoreError, match="cannot open an S3 client for bucket 'steps'"):
        await store.__aenter__()
    with pytest.raises(RuntimeError, match="is closed"):
        await store.list_done(PREFIX)


async def test_aclose_in_a_cancelled_scope_runs_to_its_end(aws: Any) -> None:
    store = S3Store("steps", endpoint_url=aws.endpoint_url)
    await store.__aenter__()
    await store.client.create_bucket(Bucket="steps")  # the HTTP session is open now
    closed_to_the_end = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        await store.aclose()  # shielded: the cancellation does not cut it short...
        closed_to_the_end = True
        await anyio.lowlevel.checkpoint()  # ...and is delivered at the next checkpoint
    assert closed_to_the_end
    assert scope.cancelled_caught


async def test_closing_the_store_stops_its_requests_in_flight_and_sends_none_after(
    aws: Any, flaky: Any
) -> None:
    """A marker write held by the network when the store closes, and one
    waiting for a slot, fail as closed: neither is sent (or retried) on a
    client that closed, which would open a new HTTP session that nothing
    closes and write a marker after ``aclose()`` returned."""
    store = S3Store("steps", endpoint_url=flaky.endpoint_url, max_concurrency=1)
    await store.__aenter__()
    await store.client.create_bucket(Bucket="steps")
    flaky.hold_next(1, "")  # S3 requests have no X-Amz-Target: the next one hangs
    before = flaky.received[""]
    failures: dict[str, BaseException] = {}

    async def write(name: str) -> None:
        try:
            await store.mark_done(PREFIX, name, {})
        except RuntimeError as exc:
            failures[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "held")
        with anyio.fail_after(10):
            # The held write reached the proxy (a thread of its own, no event to wait on).
            while flaky.received[""] == before:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.start_soon(write, "waiting")
        await anyio.wait_all_tasks_blocked()
        await store.aclose()
    assert sorted(failures) == ["held", "waiting"]
    assert "closed while the request was in flight" in str(failures["held"])
    assert "is closed" in str(failures["waiting"])
    assert flaky.received[""] == before + 1
    async with S3Store("steps", endpoint_url=aws.endpoint_url) as other:
        assert await other.list_done(PREFIX) == set()


async def test_max_concurrency_bounds_every_kind_of_request(aws: Any) -> None:
    """Counted at the API call, before the connection pool (sized alike) can
    make anyone wait: only the store's own limit can hold calls back there."""
    in_flight = peak = calls = 0

    def started(**_: Any) -> None:
        nonlocal in_flight, peak, calls
        in_flight += 1
        calls += 1
        peak = max(peak, in_flight)

    def finished(**_: Any) -> None:
        nonlocal in_flight
        in_flight -= 1

    async with S3Store("steps", endpoint_url=aws.endpoint_url, max_concurrency=2) as store:
        await store.client.create_bucket(Bucket="steps")
        store.client.meta.events.register("before-call.s3", started)
        store.client.meta.events.register("after-call.s3", finished)
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(store.mark_done, f"w{i}/steps/", "a", {})
                tg.start_soon(store.list_done, f"w{i}/steps/")
                tg.start_soon(store.unmark, f"w{i}/steps/", ["old"])
    assert calls == 30
    assert peak <= 2


@pytest.fixture
def read_only_keys(aws: Any) -> Any:
    """Credentials of an IAM user who may list the bucket but not write to it,
    with moto enforcing IAM for the duration of the test.

    AWS checks ListObjectsV2 against the IAM action ``s3:ListBucket``. moto
    5.2.x checks every request against an action named after its API operation
    (its ``_get_action`` asks botocore's service model, so the listing needs
    ``s3:ListObjectsV2``, an action real IAM does not have); moto 5.1 used
    ``s3:ListBucket``. The policy allows both, so that the listing passes on
    either, and nothing else: the marker's PutObject is denied on both."""
    import boto3

    iam = boto3.client("iam", endpoint_url=aws.endpoint_url)
    iam.create_user(UserName="reader")
    iam.put_user_policy(
        UserName="reader",
        PolicyName="list-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket", "s3:ListObjectsV2"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    aws.enforce_iam()
    yield key
    aws.enforce_iam(False)


async def test_denied_access_names_bucket_and_prefix_and_keeps_the_result(
    s3: S3Store, aws: Any, read_only_keys: Any
) -> None:
    import aioboto3

    session = aioboto3.Session(
        aws_access_key_id=read_only_keys["AccessKeyId"],
        aws_secret_access_key=read_only_keys["SecretAccessKey"],
        aws_session_token=None,
    )
    async with S3Store("steps", endpoint_url=aws.endpoint_url, session=session) as store:
        with pytest.raises(MarkDoneError) as info:
            await Runner(store, "wf").step("export", lambda: "12 rows")
    assert info.value.result == "12 rows"
    cause = info.value.__cause__
    assert isinstance(cause, StoreError)
    assert "bucket 'steps' under prefix 'wf/steps/'" in str(cause)
    assert "access denied: check the credentials" in str(cause)


ACCESS_HINT = (
    "access denied: check the credentials in use and that the policy allows "
    "s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on this prefix"
)


@pytest.mark.parametrize(
    ("encryption", "kms_hint"),
    [
        (
            {},
            " (and, on a bucket that encrypts with SSE-KMS, kms:GenerateDataKey to write "
            "and kms:Decrypt to read, on its key)",
        ),
        (
            {"sse": "aws:kms"},
            ", and kms:GenerateDataKey to write and kms:Decrypt to read, on the KMS key "
            "the store encrypts with (sse='aws:kms': the account's aws/s3 key)",
        ),
        (
            {"sse": "aws:kms", "sse_kms_key_id": "alias/markers"},
            ", and kms:GenerateDataKey to write and kms:Decrypt to read, on the KMS key "
            "the store encrypts with (sse_kms_key_id='alias/markers')",
        ),
    ],
    ids=["no-sse", "kms", "kms-key"],
)
async def test_denied_access_names_the_kms_permissions_a_kms_store_needs(
    s3: S3Store, aws: Any, read_only_keys: Any, encryption: dict[str, str], kms_hint: str
) -> None:
    """With SSE-KMS, S3 needs the caller's KMS permissions too, and a denial
    from KMS comes back as S3's AccessDenied: the hint names them."""
    import aioboto3

    session = aioboto3.Session(
        aws_access_key_id=read_only_keys["AccessKeyId"],
        aws_secret_access_key=read_only_keys["SecretAccessKey"],
        aws_session_token=None,
    )
    async with S3Store(
        "steps", endpoint_url=aws.endpoint_url, session=session, **encryption
    ) as store:
        with pytest.raises(StoreError) as info:
            await store.mark_done(PREFIX, "export", {})
    assert str(info.value) == (
        "cannot write a marker to bucket 'steps' under prefix 'wf/steps/': "
        + ACCESS_HINT
        + kms_hint
    )


async def test_a_throttled_marker_write_is_retried_and_the_step_completes(flaky: Any) -> None:
    from .conftest import RequestCounter

    async with S3Store("steps", endpoint_url=flaky.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        counter = RequestCounter().attach(store.client)
        # One 503 SlowDown answer, then S3 recovers. (botocore waits before
        # retrying, up to 1 s at random, and nothing public shortens it: one
        # throttle shows the retry at the least cost.)
        flaky.fail_next(1)
        outcome = await Runner(store, "wf").step("export", lambda: "done")
        assert outcome.status == "completed"
        assert await store.list_done(PREFIX) == {"export"}
    assert flaky.failed == 1
    assert counter.calls["PutObject"] == 1  # one API call...
    assert counter.sends == 1 + 2 + 1  # ...sent twice, plus two listings


async def test_retries_are_the_callers_to_tune_and_then_the_result_is_kept(flaky: Any) -> None:
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 2})
    async with S3Store("steps", endpoint_url=flaky.endpoint_url, client_config=config) as store:
        await store.client.create_bucket(Bucket="steps")
        flaky.fail_next(10)
        with pytest.raises(MarkDoneError) as info:
            await Runner(store, "wf").step("export", lambda: "12 rows")
    assert flaky.failed == 2  # total_max_attempts=2: the caller's setting won
    assert info.value.result == "12 rows"
    assert "SlowDown" in str(info.value.__cause__)


async def test_by_default_a_write_is_tried_five_times_in_all(flaky: Any) -> None:
    async with S3Store("steps", endpoint_url=flaky.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        flaky.fail_next(100)
        with pytest.raises(MarkDoneError):
            await Runner(store, "wf").step("export", lambda: None)
    assert flaky.failed == 5


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        ({"max_attempts": 2}, {"mode": "standard", "total_max_attempts": 3}),
        ({"total_max_attempts": 2}, {"mode": "standard", "total_max_attempts": 2}),
        ({"mode": "adaptive"}, {"mode": "adaptive", "total_max_attempts": 5}),
        ({"mode": "legacy", "max_attempts": 1}, {"mode": "legacy", "total_max_attempts": 2}),
    ],
    ids=["max-attempts", "total-max-attempts", "mode-alone", "both"],
)
async def test_a_partial_retries_setting_keeps_the_standard_mode_unless_it_names_one(
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    retries: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    """A caller who sets the attempts alone keeps the standard mode, which
    botocore would otherwise replace with its legacy one (or the environment's)."""
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    config = AioConfig(retries=retries)
    async with S3Store("steps", endpoint_url=aws.endpoint_url, client_config=config) as store:
        assert store.client.meta.config.retries == expected


# -- S3's 1,024-byte key: the key root and the claims area count too -------------

LONG_ID = "w" * 200
# 824 bytes once formatted: a 200-character step name fills S3's key exactly.
LONG_PREFIX = "/".join(["p" * 200] * 3) + "/" + "q" * 19 + "/{workflow_id}/"


@pytest.mark.parametrize(
    ("key_root", "exclusive"),
    [("some/root", False), ("", True)],
    ids=["key-root", "claims-area"],
)
async def test_a_prefix_with_no_room_for_the_longest_key_fails_the_step_before_it_runs(
    aws: Any, key_root: str, exclusive: bool
) -> None:
    ran: list[str] = []
    assert len(format_prefix(LONG_PREFIX, LONG_ID, None)) == 824
    async with S3Store("steps", key_root=key_root, endpoint_url=aws.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        with pytest.raises(InvalidPrefix, match="1,024") as info:
            runner = Runner(store, LONG_ID, prefix=LONG_PREFIX, exclusive=exclusive)
            await runner.step("n" * 200, lambda: ran.append("work"))
        listed = await store.client.list_objects_v2(Bucket="steps")
    assert ran == []
    assert "Contents" not in listed
    assert "shorten the prefix" in str(info.value)


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
async def test_a_prefix_with_no_room_is_refused_before_any_step_when_the_done_set_is_given(
    aws: Any, dry_run: bool
) -> None:
    """``done=`` spares the listing, not the check: the step must not run only
    to fail at its marker write with its result in hand."""
    ran: list[str] = []
    async with S3Store("steps", key_root="some/root", endpoint_url=aws.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        with pytest.raises(InvalidPrefix, match="1,024"):
            runner = Runner(store, LONG_ID, prefix=LONG_PREFIX, done=(), dry_run=dry_run)
            await runner.step("n" * 200, lambda: ran.append("work"))
        listed = await store.client.list_objects_v2(Bucket="steps")
    assert ran == []
    assert "Contents" not in listed


async def test_a_workflow_whose_prefix_has_no_room_fails_alone_in_a_batch(aws: Any) -> None:
    # The prefix is the workflow's own (its id is in it): one id too long for
    # S3's keys fails as one workflow, and the batch goes on.
    async def flow(runner: Runner, **_: Any) -> None:
        await runner.step("a", lambda: None)

    async with S3Store("steps", key_root="some/root", endpoint_url=aws.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        batch = BatchRun(flow, store, prefix=LONG_PREFIX, concurrency=1)
        summary = await batch.run([LONG_ID, "w1"])
    assert summary.aborted is None
    assert (summary.succeeded, summary.failed_ids) == (1, [LONG_ID])
    assert "1,024" in summary.errors[LONG_ID]


async def test_a_prefix_that_leaves_room_for_every_key_runs(aws: Any) -> None:
    async with S3Store("steps", endpoint_url=aws.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        prefix = "/".join(["p" * 200] * 3) + "/" + "q" * 4 + "/{workflow_id}/"  # 809 bytes
        runner = Runner(store, LONG_ID, prefix=prefix, exclusive=True)
        outcome = await runner.step("n" * 200, lambda: "done")
    assert outcome.status == "completed"
