"""What S3Store says when a request fails: botocore's errors, told apart by
code and type, as a ``StoreError`` that names the bucket and the prefix and
says what to check. ``s3.py`` holds the requests; this module, the sentences.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
)

from ..errors import StoreError, StoreUnreachable, UnmarkError

DENIED = ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId")


def unreachable(exc: BaseException) -> bool:
    """Whether no connection to the endpoint, or to its proxy, could be made:
    then every request fails the same way (:class:`StoreUnreachable`).

    A connection that broke once the request was on its way is not: the
    request may have been applied, and the next one may go through.
    aiobotocore raises ``EndpointConnectionError`` for both, and passes what
    aiohttp raised as its ``error``: a connector error or a failed name lookup
    is the connection not made.
    """
    if isinstance(exc, ConnectTimeoutError | ProxyConnectionError):
        return True
    if isinstance(exc, EndpointConnectionError):
        cause = exc.kwargs.get("error")
        return isinstance(cause, aiohttp.ClientConnectorError | socket.gaierror)
    return False


@dataclass(frozen=True)
class Explainer:
    """The sentences of one store's failures."""

    bucket: str
    key_root: str
    endpoint: str
    """The endpoint URL, or ``"AWS default"``."""
    read_timeout: float
    denied: str
    """What to check when access is denied (:func:`denied_hint`)."""

    def where(self, prefix: str) -> str:
        return f"bucket {self.bucket!r} under prefix {self.key_root + prefix!r}"

    def error(self, exc: ClientError | BotoCoreError, doing: str, prefix: str) -> StoreError:
        """``exc``, raised while the store tried ``doing`` under ``prefix``, said."""
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket" or status == 404:
                hint = "the bucket does not exist: check its name, region and endpoint"
            elif code in DENIED or status == 403:
                hint = self.denied
            else:
                hint = f"S3 answered {code or status}: {error.get('Message', exc)}"
        elif isinstance(exc, ReadTimeoutError):
            hint = (
                f"endpoint {self.endpoint} did not answer within {self.read_timeout:g} s "
                "(read_timeout), in any attempt; check the endpoint and the network, or "
                "raise read_timeout with client_config=AioConfig(read_timeout=...)"
            )
        elif isinstance(exc, ProxyConnectionError):
            hint = f"{exc}; check the proxy (HTTPS_PROXY, or client_config's proxies)"
        elif unreachable(exc):
            hint = (
                f"endpoint {self.endpoint} is unreachable; check endpoint_url, the network "
                "and the region"
            )
        elif isinstance(exc, EndpointConnectionError):
            hint = (
                f"the connection to endpoint {self.endpoint} broke during the request "
                f"({exc.kwargs.get('error')}); it may have been applied: check the network"
            )
        elif isinstance(exc, NoCredentialsError):
            hint = (
                "no AWS credentials found; set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass a session"
            )
        else:
            hint = str(exc)
        kind = StoreUnreachable if unreachable(exc) else StoreError
        return kind(f"cannot {doing} {self.where(prefix)}: {hint}", prefix=prefix)

    def not_removed(self, prefix: str, wanted: list[str], failed: dict[str, str]) -> UnmarkError:
        """One error for every marker an unmark left (``failed``: name -> why)."""
        return UnmarkError.of(self.where(prefix), wanted, failed, prefix=prefix)


def denied_hint(sse: str | None, kms_key_id: str | None) -> str:
    """What to check when S3 denies access. With SSE-KMS, S3 asks KMS on the
    caller's behalf (GenerateDataKey for a write, Decrypt for a read) and a
    refusal there comes back as S3's AccessDenied: the KMS permissions are
    named too, for sure when the store encrypts with KMS, as a possibility
    otherwise (the bucket's default encryption may be SSE-KMS)."""
    hint = (
        "access denied: check the credentials in use and that the policy allows "
        "s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on this prefix"
    )
    kms = "kms:GenerateDataKey to write and kms:Decrypt to read"
    if sse != "aws:kms":
        return f"{hint} (and, on a bucket that encrypts with SSE-KMS, {kms}, on its key)"
    key = (
        f"sse_kms_key_id={kms_key_id!r}"
        if kms_key_id
        else "sse='aws:kms': the account's aws/s3 key"
    )
    return f"{hint}, and {kms}, on the KMS key the store encrypts with ({key})"


def refused_condition(exc: ClientError) -> bool:
    """PreconditionFailed (412), ConditionalRequestConflict (409), or a claim
    that is gone (404, but not a missing bucket)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = exc.response.get("Error", {}).get("Code")
    return status in (409, 412) or (status == 404 and code != "NoSuchBucket")
