"""S3Store: done markers as S3 objects, in simpleflow's layout, through aioboto3.

Request budget (why it looks like this): a workflow run lists its prefix once
(one ListObjectsV2 page per 1,000 markers) and writes one PutObject per
executed step; a skipped step costs nothing. A body is read (one GetObject)
only for a step that keeps its result or reruns on a new version, and no HEAD
or GetBucketLocation is ever sent per step. Discovering workflows costs one
ListObjectsV2 page per 1,000 workflow ids.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from .._aws import SETUP_ERRORS, SETUP_HINT, open_client
from .._aws import client_config as aws_config
from .._json import MAX_BODY_BYTES
from .._names import MAX_KEY_BYTES, MAX_NAME_LENGTH, is_valid_name, shown
from ..errors import InvalidPrefix, StoreError, StoreUnreachable, describe
from ._s3_args import (
    check_endpoint_url,
    check_key_root,
    check_max_concurrency,
    check_region,
    check_sse,
    parse_bucket,
)
from ._s3_errors import Explainer, denied_hint, refused_condition
from .base import CLAIMS_ROOT, BaseStore, body_json, parse_body

DELETE_BATCH = 1000
"""DeleteObjects takes at most 1,000 keys a request."""

NOT_TRIED = "not tried, as the store could not be reached"
"""Why an unmark left the markers of the batches after one that found the
store unreachable."""


class S3Store(BaseStore):
    """Done markers in one S3 bucket. Use as an async context manager: it owns
    one aioboto3 client, shared by every runner that uses the store.

    ``key_root`` (``"some/root"``) is put before every key, so markers live at
    ``some/root/<prefix><name>``; listings strip it again. ``sse`` is
    ``"AES256"`` or ``"aws:kms"`` (with ``sse_kms_key_id``), applied to every
    write (markers, and the claims of exclusive steps). ``client_config`` (an
    ``AioConfig``) is merged over the defaults: standard retry mode, 5
    attempts, ``max_concurrency`` connections (``retries`` key by key:
    ``{"max_attempts": 2}`` keeps the standard mode). At most ``max_concurrency``
    requests (listings, writes, deletes) are in flight at once. Credentials
    and region come from the usual AWS environment.

    Lifecycle (see :class:`~asteps.stores.base.BaseStore`): unopened, then
    opened by ``async with`` (or ``__aenter__``), then closed by leaving the
    block or ``aclose()``. Opening it twice, or again once closed, raises
    ``RuntimeError``; ``aclose()`` may be called any number of times.
    Closing cancels the requests in flight (each raises ``RuntimeError``) and
    waits for them to stop before the client closes.
    """

    needs_opening = True

    def __init__(
        self,
        bucket: str,
        *,
        key_root: str = "",
        session: aioboto3.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: AioConfig | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        max_concurrency: int = 64,
    ) -> None:
        self.bucket, host = parse_bucket(bucket)
        self.key_root = check_key_root(key_root)
        if endpoint_url is not None:
            check_endpoint_url(endpoint_url, "endpoint_url")
        self.endpoint_url = endpoint_url or host
        self.region_name = None if region_name is None else check_region(region_name, "region_name")
        check_sse(sse, sse_kms_key_id, sse_arg="sse", kms_arg="sse_kms_key_id")
        self.max_concurrency = check_max_concurrency(max_concurrency, "max_concurrency")
        self._put_extra: dict[str, str] = {}
        if sse:
            self._put_extra["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._put_extra["SSEKMSKeyId"] = sse_kms_key_id
        self._config = aws_config(client_config, max_pool_connections=max_concurrency)
        self._explain = Explainer(
            self.bucket,
            self.key_root,
            self.endpoint_url or "AWS default",
            self._config.read_timeout,
            denied_hint(sse, sse_kms_key_id),
        )
        self._session = session
        super().__init__()
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        # A request that can start now starts without a pause: it waits on the
        # network next anyway (anyio's fast_acquire).
        self._limit = anyio.Semaphore(max_concurrency, fast_acquire=True)
        # The requests in flight: closing cancels them and waits for them to
        # stop before the client closes (botocore would retry one on a closed
        # client, which opens a new HTTP session that nothing closes).
        self._in_flight: set[anyio.CancelScope] = set()
        self._stopped: anyio.Event | None = None  # set once the last one stopped

    def __repr__(self) -> str:
        root = f", key_root={self.key_root!r}" if self.key_root else ""
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.bucket!r}{root}{where})"

    async def _open(self) -> None:
        self._stack = AsyncExitStack()
        try:
            self._client = await open_client(
                self._stack,
                "s3",
                session=self._session,
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                config=self._config,
            )
        except SETUP_ERRORS as exc:  # a bad endpoint, profile or region in the environment
            raise StoreError(
                f"cannot open an S3 client for bucket {self.bucket!r}: {describe(exc)}; "
                f"{SETUP_HINT}"
            ) from exc

    async def _close(self) -> None:
        for scope in list(self._in_flight):
            scope.cancel()
        if self._in_flight:
            self._stopped = anyio.Event()
            await self._stopped.wait()
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> Any:
        """The aioboto3 S3 client (for event hooks and advanced use)."""
        self._check_usable()
        return self._client

    # -- the DoneStore protocol -----------------------------------------------

    async def list_done(self, prefix: str) -> set[str]:
        """The valid step names directly under ``prefix`` (``Delimiter="/"``: deeper
        keys are not listed), as the file store lists a directory.

        A prefix with no room for the longest key under it is refused
        (:meth:`check_prefix`, which a runner also calls when it is built)."""
        self.check_prefix(prefix)
        client = self.client
        names: set[str] = set()
        key_prefix = self.key_root + prefix
        cut = len(key_prefix)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key_prefix, "Delimiter": "/"}
        while True:
            page = await self._call(client.list_objects_v2, prefix, "list", **kwargs)
            for obj in page.get("Contents", ()):
                name = obj["Key"][cut:]
                if is_valid_name(name):
                    names.add(name)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return names
            kwargs["ContinuationToken"] = token

    async def list_workflows(
        self, root: str = "", *, start_after: str | None = None
    ) -> AsyncGenerator[str, None]:
        """The "directories" directly under ``root``: ListObjectsV2 with
        ``Delimiter="/"``, one page (up to 1,000 names) at a time, so a bucket of
        a million workflows is never held in memory; those after
        ``start_after`` only (S3's ``StartAfter``)."""
        client = self.client
        key_prefix = self.key_root + root
        cut = len(key_prefix)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key_prefix, "Delimiter": "/"}
        if start_after is not None:
            # The keys after "name/": that workflow's own keys come back as its
            # common prefix, passed over.
            kwargs["StartAfter"] = f"{key_prefix}{start_after}/"
        while True:
            page = await self._call(client.list_objects_v2, root, "list workflows in", **kwargs)
            for common in page.get("CommonPrefixes", ()):
                if (name := common["Prefix"][cut:-1]) != start_after:
                    yield name
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        await self._call(
            self.client.put_object,
            prefix,
            "write a marker to",
            Bucket=self.bucket,
            Key=self.key_root + prefix + name,
            Body=body_json(body),
            ContentType="application/json",
            **self._put_extra,
        )

    async def read_marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        """One GetObject; None when the marker does not exist."""
        key = self.key_root + prefix + name

        async def get_body() -> bytes | None:
            try:
                response = await self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            body = response["Body"]
            async with body:  # releases the connection, read to the end or not
                return await read_bounded(body, MAX_BODY_BYTES + 1)  # more is refused

        raw = await self._call(get_body, prefix, "read a marker from")
        return None if raw is None else parse_body(raw, f"s3://{self.bucket}/{key}")

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        """Remove the markers of exactly these names (absent ones are ignored):
        DeleteObjects, ``DELETE_BATCH`` keys a request. Every batch is tried,
        even after one failed; then one :class:`~asteps.errors.UnmarkError`
        names the markers not removed, and why.

        But when the store cannot be reached at all (no connection, after the
        client's retries: :class:`~asteps.errors.StoreUnreachable`), the
        batches after that one are not tried: each would wait through the same
        retries to fail the same way. Their markers are named as not removed
        too, and the StoreUnreachable is the error's ``__cause__``."""
        client = self.client
        wanted = list(dict.fromkeys(names))
        key_prefix = self.key_root + prefix
        cut = len(key_prefix)
        failed: dict[str, str] = {}  # name -> why it was not removed
        cause: StoreError | None = None
        for start in range(0, len(wanted), DELETE_BATCH):
            batch = wanted[start : start + DELETE_BATCH]
            try:
                response = await self._call(
                    client.delete_objects,
                    prefix,
                    "remove markers from",
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key_prefix + n} for n in batch], "Quiet": True},
                )
            except StoreUnreachable as exc:
                cause = exc  # why the rest was not tried, whatever failed before
                failed.update(dict.fromkeys(batch, str(exc)))
                failed.update(dict.fromkeys(wanted[start + DELETE_BATCH :], NOT_TRIED))
                break
            except StoreError as exc:  # the whole batch: the next ones are still tried
                cause = cause or exc
                failed.update(dict.fromkeys(batch, str(exc)))
                continue
            for error in response.get("Errors") or ():
                failed[str(error.get("Key", ""))[cut:]] = (
                    f"S3 refused {error.get('Code')}: {error.get('Message')}; check "
                    "s3:DeleteObject is allowed"
                )
        if failed:
            raise self._explain.not_removed(prefix, wanted, failed) from cause

    # -- claims of exclusive steps (see asteps.stores.base.HoldsClaims) ------------
    # S3's conditional writes: a claim is created with If-None-Match: *,
    # renewed or taken over with If-Match on its ETag, and deleted with
    # If-Match. A refused condition (412, a conflict 409, or a claim gone 404)
    # is an answer, not an error; a refused write is checked against what
    # was sent, in case the refusal answered a resend of an applied write.

    def check_prefix(self, prefix: str) -> None:
        """Refuse ``prefix`` (:class:`~asteps.errors.InvalidPrefix`) when its
        longest key would pass S3's limit: the claim of a step with the longest
        name, under the key root (see :class:`~asteps.stores.base.ChecksPrefixes`)."""
        longest = self.key_root + CLAIMS_ROOT + prefix
        size = len(longest.encode("utf-8", "surrogatepass")) + MAX_NAME_LENGTH
        if size > MAX_KEY_BYTES:
            # The prefix's fault, not the store's: in a batch, only the
            # workflow whose prefix it is fails.
            raise InvalidPrefix(
                f"prefix {shown(prefix)} leaves no room in bucket {self.bucket!r}: with the "
                f"key root {self.key_root!r} and the claims area {CLAIMS_ROOT!r}, a step "
                f"name of {MAX_NAME_LENGTH} characters makes a key of {size:,} bytes, and "
                f"S3 allows {MAX_KEY_BYTES:,}: shorten the prefix or the key root"
            )

    def _claim_key(self, prefix: str, name: str) -> str:
        return self.key_root + CLAIMS_ROOT + prefix + name

    async def _conditional(self, method: Any, prefix: str, doing: str, **kwargs: Any) -> Any:
        """The response, or None when S3 refused the request's condition."""

        async def call() -> Any:
            try:
                return await method(**kwargs)
            except ClientError as exc:
                if refused_condition(exc):
                    return None
                raise

        return await self._call(call, prefix, doing)

    async def create_claim(self, prefix: str, name: str, body: Mapping[str, Any]) -> str | None:
        return await self._put_claim(prefix, name, body, "create a claim in", IfNoneMatch="*")

    async def read_claim(self, prefix: str, name: str) -> str | None:
        response = await self._conditional(
            self.client.head_object,
            prefix,
            "read a claim in",
            Bucket=self.bucket,
            Key=self._claim_key(prefix, name),
        )
        return None if response is None else str(response["ETag"])

    async def replace_claim(
        self, prefix: str, name: str, token: str, body: Mapping[str, Any]
    ) -> str | None:
        return await self._put_claim(prefix, name, body, "renew a claim in", IfMatch=token)

    async def _put_claim(
        self, prefix: str, name: str, body: Mapping[str, Any], doing: str, **condition: str
    ) -> str | None:
        """Write a claim if ``condition`` holds (``IfNoneMatch`` or ``IfMatch``):
        its new ETag, or None when the condition failed."""
        raw = json.dumps(dict(body)).encode()
        response = await self._conditional(
            self.client.put_object,
            prefix,
            doing,
            Bucket=self.bucket,
            Key=self._claim_key(prefix, name),
            Body=raw,
            ContentType="application/json",
            **self._put_extra,  # encrypted as the markers: a bucket policy may require it
            **condition,
        )
        if response is not None:
            return str(response["ETag"])
        # A write whose answer was lost is sent again, by botocore's retries (a
        # dropped connection, a 5xx) or by aiohttp itself (a PUT on a kept-alive
        # connection that dropped): if the first was applied, the second's
        # condition fails on the claim this very write made (If-Match on its
        # ETag, If-None-Match on its existence). A claim that holds exactly what
        # was sent (run id, host, pid, renewal count, time) was written by this
        # call. A creation refused so waited a lease for its own claim to go stale.
        return await self._claim_if_written(prefix, name, raw, doing)

    async def _claim_if_written(self, prefix: str, name: str, raw: bytes, doing: str) -> str | None:
        """The claim's ETag if its body is ``raw``; None otherwise, or when it is gone."""

        async def get() -> tuple[bytes, str] | None:
            try:
                response = await self.client.get_object(
                    Bucket=self.bucket, Key=self._claim_key(prefix, name)
                )
            except ClientError as exc:
                if refused_condition(exc):  # gone (404)
                    return None
                raise
            body = response["Body"]
            async with body:  # releases the connection
                return await read_bounded(body, len(raw) + 1), str(response["ETag"])

        found = await self._call(get, prefix, doing)
        return found[1] if found is not None and found[0] == raw else None

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        await self._conditional(
            self.client.delete_object,
            prefix,
            "release a claim in",
            Bucket=self.bucket,
            Key=self._claim_key(prefix, name),
            IfMatch=token,
        )

    # -- every request goes through here ------------------------------------------

    async def _call(self, method: Any, prefix: str, doing: str, **kwargs: Any) -> Any:
        """One request, within the ``max_concurrency`` limit, its errors as StoreError."""
        try:
            async with self._limit:
                self._check_usable()  # closed while this request waited for its turn
                with anyio.CancelScope() as scope:
                    self._in_flight.add(scope)
                    try:
                        return await method(**kwargs)
                    finally:
                        self._in_flight.discard(scope)
                        if not self._in_flight and self._stopped is not None:
                            self._stopped.set()
                # Only the store's closing cancels this scope.
                raise RuntimeError(
                    f"cannot {doing} {self._explain.where(prefix)}: the store was closed while "
                    "the request was in flight; close it only once the runners that use it "
                    "have finished"
                )
        except (ClientError, BotoCoreError) as exc:
            raise self._explain.error(exc, doing, prefix) from exc


async def read_bounded(body: Any, limit: int) -> bytes:
    """The bytes of a streaming body up to its end, or its first ``limit`` bytes.

    aiobotocore's ``read(amt)`` returns what is buffered, up to ``amt``: one
    call can return 64 KB of a 200 KB body. So read until the end (an empty
    read, which also checks the Content-Length) or until ``limit`` bytes are in.
    """
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk: bytes = await body.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
