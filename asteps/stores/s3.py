"""S3Store: done markers as S3 objects, in simpleflow's layout, through aioboto3.

Request budget (why it looks like this): a workflow run lists its prefix once
(one ListObjectsV2 page per 1,000 markers) and writes one PutObject per
executed step; a skipped step costs nothing. Nothing reads a marker's body,
and no HEAD, GET or GetBucketLocation is ever sent per step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from .._aws import client_config as aws_config
from ..errors import StoreError
from .base import list_done_many, unmark_matching

DELETE_BATCH = 1000
"""DeleteObjects takes at most 1,000 keys a request."""


def parse_bucket(bucket: str) -> tuple[str, str | None]:
    """Split simpleflow's ``"<host>/<bucket>"`` form into (bucket, endpoint_url).

    ``"my-bucket"`` -> ("my-bucket", None);
    ``"s3.eu-west-1.amazonaws.com/my-bucket"`` -> ("my-bucket", "https://s3.eu-west-1.amazonaws.com");
    ``"http://127.0.0.1:5000/my-bucket"`` keeps its scheme.
    """
    if not bucket or bucket.endswith("/"):
        raise StoreError(f"S3 bucket {bucket!r} is empty: give a bucket name or '<host>/<bucket>'")
    if "/" not in bucket:
        return bucket, None
    host, _, name = bucket.rpartition("/")
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    return name, host


class S3Store:
    """Done markers in one S3 bucket. Use as an async context manager: it owns
    one aioboto3 client, shared by every runner that uses the store.

    ``sse`` is ``"AES256"`` or ``"aws:kms"`` (with ``sse_kms_key_id``), applied
    to every marker write. ``client_config`` (an ``AioConfig``) is merged over
    the defaults: standard retry mode, 5 attempts, ``max_concurrency``
    connections. Credentials and region come from the usual AWS environment.
    """

    def __init__(
        self,
        bucket: str,
        *,
        session: aioboto3.Session | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: AioConfig | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        max_concurrency: int = 64,
    ) -> None:
        self.bucket, host = parse_bucket(bucket)
        self.endpoint_url = endpoint_url or host
        self.region_name = region_name
        if sse not in (None, "AES256", "aws:kms"):
            raise StoreError(f"sse must be None, 'AES256' or 'aws:kms', got {sse!r}")
        if sse_kms_key_id and sse != "aws:kms":
            raise StoreError("sse_kms_key_id needs sse='aws:kms'")
        if max_concurrency < 1:
            raise StoreError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._put_extra: dict[str, str] = {}
        if sse:
            self._put_extra["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._put_extra["SSEKMSKeyId"] = sse_kms_key_id
        self.max_concurrency = max_concurrency
        self._config = aws_config(client_config, max_pool_connections=max_concurrency)
        self._session = session or aioboto3.Session()
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._limit = anyio.Semaphore(max_concurrency)

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.bucket!r}{where})"

    async def __aenter__(self) -> S3Store:
        if self._stack is not None:
            raise StoreError("this S3Store is already open; share it instead of reopening")
        stack = AsyncExitStack()
        self._client = await stack.enter_async_context(
            self._session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                config=self._config,
            )
        )
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client; the store can be opened again afterwards."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> Any:
        """The aioboto3 S3 client (for event hooks and advanced use)."""
        if self._client is None:
            raise StoreError(
                "S3Store is not open: use 'async with S3Store(...) as store:' before running steps"
            )
        return self._client

    # -- the DoneStore protocol -----------------------------------------------

    async def list_done(self, prefix: str) -> set[str]:
        client = self.client
        names: set[str] = set()
        cut = len(prefix)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        async with self._limit:
            while True:
                page = await self._call(client.list_objects_v2, prefix, "list", **kwargs)
                names.update(obj["Key"][cut:] for obj in page.get("Contents", ()))
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    return names
                kwargs["ContinuationToken"] = token

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        client = self.client
        async with self._limit:
            await self._call(
                client.put_object,
                prefix,
                "write a marker to",
                Bucket=self.bucket,
                Key=prefix + name,
                Body=json.dumps(dict(body)).encode(),
                ContentType="application/json",
                **self._put_extra,
            )

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        client = self.client
        keys = [prefix + n for n in dict.fromkeys(names)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            async with self._limit:
                response = await self._call(
                    client.delete_objects,
                    prefix,
                    "remove markers from",
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreError(
                    f"S3 refused to delete {len(errors)} marker(s) in bucket {self.bucket!r} "
                    f"under {prefix!r}, first {first.get('Key')!r}: {first.get('Code')} "
                    f"{first.get('Message')}; check s3:DeleteObject is allowed",
                    prefix=prefix,
                )

    # -- batch helpers ---------------------------------------------------------

    async def list_done_many(
        self, prefixes: Iterable[str], *, concurrency: int | None = None
    ) -> dict[str, frozenset[str]]:
        """Every prefix's done set, listed concurrently (``max_concurrency`` at most)."""
        return await list_done_many(self, prefixes, concurrency=concurrency or self.max_concurrency)

    async def unmark_matching(
        self, prefix: str, patterns: str | Iterable[str], *, dry_run: bool = False
    ) -> list[str]:
        """Remove every marker a pattern covers (``a`` removes ``a.b``, not ``ab``)."""
        return await unmark_matching(self, prefix, patterns, dry_run=dry_run)

    # -- errors ----------------------------------------------------------------

    async def _call(self, method: Any, prefix: str, doing: str, **kwargs: Any) -> Any:
        where = f"bucket {self.bucket!r} under prefix {prefix!r}"
        try:
            return await method(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket" or status == 404:
                hint = "the bucket does not exist: check its name, region and endpoint"
            elif (
                code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId") or status == 403
            ):
                hint = (
                    "access denied: check the credentials in use and that the policy allows "
                    "s3:ListBucket, s3:PutObject and s3:DeleteObject on this prefix"
                )
            else:
                hint = f"S3 answered {code or status}: {error.get('Message', exc)}"
            raise StoreError(f"cannot {doing} {where}: {hint}", prefix=prefix) from exc
        except EndpointConnectionError as exc:
            raise StoreError(
                f"cannot {doing} {where}: endpoint {self.endpoint_url or 'AWS default'} is "
                "unreachable; check endpoint_url, the network and the region",
                prefix=prefix,
            ) from exc
        except NoCredentialsError as exc:
            raise StoreError(
                f"cannot {doing} {where}: no AWS credentials found; set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass a session",
                prefix=prefix,
            ) from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot {doing} {where}: {exc}", prefix=prefix) from exc
