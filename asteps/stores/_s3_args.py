"""What an S3Store accepts, checked without importing aioboto3.

``S3Store(...)`` and store URLs (``s3://bucket/key-root?region=...``) check the
same things here, before any I/O. Each check raises a ``StoreError`` that names
the argument as the caller spelled it (``region`` in a URL, ``region_name`` in
Python) and says what a valid value looks like.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .._names import shown, unprintable
from ..errors import StoreError

SSE_MODES = ("AES256", "aws:kms")

# botocore's own rule for region names (botocore.utils.validate_region_name).
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$")

# S3's rules for bucket names (general purpose buckets): 3 to 63 characters of
# a-z, 0-9, '-' and '.', beginning and ending with a letter or digit, no '..',
# not shaped like an IPv4 address. Buckets made in us-east-1 before March 2018
# may also have capitals and '_', up to 255 characters: they still exist, so
# they are accepted. (botocore checks only [a-zA-Z0-9.\-_]{1,255}.)
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_IPV4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_PORT = re.compile(r".*:[0-9]*")

CREDENTIALS_REFUSED = (
    "remove them: asteps takes credentials from the AWS environment (AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)


def parse_bucket(bucket: str) -> tuple[str, str | None]:
    """Split simpleflow's ``"<host>/<bucket>"`` form into (bucket, endpoint_url).

    ``"my-bucket"`` -> ("my-bucket", None);
    ``"s3.eu-west-1.amazonaws.com/my-bucket"`` -> ("my-bucket", "https://s3.eu-west-1.amazonaws.com");
    ``"http://127.0.0.1:5000/my-bucket"`` keeps its scheme.
    """
    if not bucket or bucket.endswith("/"):
        raise StoreError(f"S3 bucket {bucket!r} is empty: give a bucket name or '<host>/<bucket>'")
    if "@" in bucket:
        raise StoreError(f"S3 bucket holds credentials (before '@'): {CREDENTIALS_REFUSED}")
    if "/" not in bucket:
        return check_bucket_name(bucket), None
    host, _, name = bucket.rpartition("/")
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    return check_bucket_name(name), check_endpoint_url(host, "S3 bucket host")


def check_bucket_name(name: str) -> str:
    """``name`` if S3 accepts it as a bucket name; a ``host:port`` is told apart."""
    if _PORT.fullmatch(name) and _BUCKET.fullmatch(name.rpartition(":")[0]):
        raise StoreError(
            f"S3 bucket {name!r} has a port, which a bucket name does not: give the "
            "endpoint instead (?endpoint_url=http://host:9000 in a store URL)"
        )
    if not _BUCKET.fullmatch(name) or ".." in name or _IPV4.fullmatch(name):
        raise StoreError(
            f"S3 bucket {name[:80]!r} is not a bucket name: S3 takes 3 to 63 lowercase "
            "letters, digits, '-' and '.', beginning and ending with a letter or digit "
            "(a bucket made before 2018 may also have capitals and '_', up to 255)"
        )
    return name


def check_endpoint_url(value: str, argument: str) -> str:
    """``value`` if it is an ``http://`` or ``https://`` URL with a host and no
    credentials (which are refused without being repeated)."""
    if holds_credentials(value):
        raise StoreError(f"{argument} holds credentials (before '@'): {CREDENTIALS_REFUSED}")
    if not _is_http_url(value):
        raise StoreError(
            f"{argument} {value!r} is not an endpoint URL: use http://host:port or https://host"
        )
    return value


def _authority(url: str) -> str:
    """The authority of ``url`` as the parsers that use it read it (urllib
    strips a leading space or control character and drops tabs and newlines
    before it parses); empty without one (``file:a//b@c`` is a path)."""
    try:
        return urlsplit(url).netloc
    except ValueError:  # an unclosed '[': look at the raw text
        return url


def holds_credentials(url: str) -> bool:
    """Whether ``url`` has a ``user:secret@`` before its host (or bucket)."""
    return "@" in _authority(url)


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError when the port is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_region(value: str, argument: str) -> str:
    """``value`` if it is shaped like an AWS region name."""
    if not _REGION.match(value):
        raise StoreError(f"{argument} {value!r} is not a region name such as eu-west-1")
    return value


MAX_CONCURRENCY = 1024
"""The most requests an S3Store sends at once: each holds a connection."""


def check_max_concurrency(value: int, argument: str) -> int:
    """``value`` if it is at least 1 and at most ``MAX_CONCURRENCY``."""
    if not 1 <= value <= MAX_CONCURRENCY:
        raise StoreError(
            f"{argument} must be from 1 to {MAX_CONCURRENCY:,}, got {shown(str(value))}"
        )
    return value


def check_sse(sse: str | None, kms_key_id: str | None, *, sse_arg: str, kms_arg: str) -> None:
    """Server-side encryption: none, ``AES256``, or ``aws:kms`` with an optional key id."""
    if sse is not None and sse not in SSE_MODES:
        raise StoreError(f"{sse_arg} must be 'AES256' or 'aws:kms', got {sse!r}")
    if kms_key_id is not None and sse != "aws:kms":
        raise StoreError(f"{kms_arg} needs {sse_arg}='aws:kms'")
    if kms_key_id is not None and not kms_key_id.strip():
        raise StoreError(f"{kms_arg} is empty: give a KMS key id or ARN, or leave it out")


def check_key_root(value: str) -> str:
    """A key root as stored: ``""``, or its segments joined by ``/`` with one ``/``
    at the end (``"/some/root"`` -> ``"some/root/"``). Empty, ``.`` and ``..``
    segments are refused: S3 would keep them literally, a file tree would not."""
    root = value.strip("/")
    if not root:
        return ""
    if (what := unprintable(root)) is not None:
        raise StoreError(f"key root {shown(value)} contains {what}: use printable text")
    if any(segment in ("", ".", "..") for segment in root.split("/")):
        raise StoreError(
            f"key root {value!r} has an empty, '.' or '..' segment: use a path like 'some/root'"
        )
    return root + "/"
