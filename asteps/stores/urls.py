"""Store URLs, parsed in one place for the CLI, the demo and services.

- ``s3://bucket[/key/root]?endpoint_url=...&region=...&sse=AES256|aws:kms&kms_key_id=...&max_concurrency=...``
  (a key root puts every marker at ``key/root/<prefix><name>``)
- ``file:///absolute/path`` (or ``file://localhost/absolute/path``) or ``file:relative/path``
- ``memory://``

``ASTEPS_STORE`` in the environment picks the default; without it the default
is the embedded FileStore at ``./.asteps``.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from .._names import shown
from ..errors import StoreError
from ._s3_args import (
    CREDENTIALS_REFUSED,
    check_bucket_name,
    check_endpoint_url,
    check_key_root,
    check_max_concurrency,
    check_region,
    check_sse,
    holds_credentials,
)
from .base import DoneStore
from .file import FileStore
from .memory import MemoryStore

ENV_VAR = "ASTEPS_STORE"
DEFAULT_URL = "file:.asteps"
_S3_OPTIONS = {"endpoint_url", "region", "sse", "kms_key_id", "max_concurrency"}


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: ``location`` is the bucket or the path; ``key_root``
    (S3 only) is ``""`` or ends with ``/``."""

    scheme: str
    location: str
    options: dict[str, str] = field(default_factory=dict)
    key_root: str = ""


def default_store_url() -> str:
    """``$ASTEPS_STORE``, else ``file:.asteps``."""
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL; errors say what a valid one looks like.

    Credentials (``s3://key:secret@bucket``, or in ``endpoint_url``) are
    refused first, in a message that does not repeat the URL. So is what
    another parser could read differently: a fragment (``#...``), an option
    given twice, a file URL naming a host (RFC 8089 reads ``file://etc/x`` as
    the path ``/x`` on host ``etc``)."""
    if holds_credentials(url):
        raise StoreError(f"store URL holds credentials (before '@'): {CREDENTIALS_REFUSED}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed '[' of an IPv6 host
        raise StoreError(f"store URL {url!r} is malformed ({exc}): use s3://bucket") from None
    if "#" in url:
        raise StoreError(
            f"store URL {url!r} has a fragment ('#...'), which no store reads: remove it "
            "(a '#' in a path is written %23)"
        )
    scheme = parts.scheme.lower()
    if scheme in ("memory", "file") and "?" in url:
        raise StoreError(
            f"store URL {url!r}: a {scheme} URL takes no options ('?...'): remove them "
            "(a '?' in a path is written %3F)"
        )
    if scheme == "memory":
        if parts.netloc or parts.path:
            raise StoreError(
                f"store URL {url!r}: memory:// names nothing (each open is a new, empty "
                "store): write memory://"
            )
        return StoreURL("memory", "")
    if scheme == "file":
        return StoreURL("file", _file_path(url, parts.netloc, parts.path))
    if scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"store URL {url!r} has no bucket: use s3://my-bucket")
        query = parse_qs(parts.query, keep_blank_values=True)
        repeated = sorted(k for k, v in query.items() if len(v) > 1)
        if repeated:
            raise StoreError(
                f"store URL {url!r} gives option {repeated[0]} {len(query[repeated[0]])} "
                "times: give it once"
            )
        options = {k: v[0] for k, v in query.items()}
        if holds_credentials(options.get("endpoint_url", "")):
            raise StoreError(
                f"store URL option endpoint_url holds credentials (before '@'): "
                f"{CREDENTIALS_REFUSED}"
            )
        unknown = set(options) - _S3_OPTIONS
        if unknown:
            raise StoreError(
                f"store URL {url!r} has unknown option(s) {sorted(unknown)}; "
                f"known: {sorted(_S3_OPTIONS)}"
            )
        try:
            bucket = check_bucket_name(parts.netloc)
            key_root = check_key_root(unquote(parts.path))
            _check_s3_options(options)
        except StoreError as exc:
            raise StoreError(f"store URL {url!r}: {exc}") from None
        return StoreURL("s3", bucket, options, key_root)
    raise StoreError(
        f"store URL {url!r} is not understood: use s3://bucket, file:path or memory://"
    )


def _file_path(url: str, host: str, path: str) -> str:
    """The local path of a file URL: ``file:///abs``, ``file://localhost/abs``,
    ``file:/abs`` or ``file:relative``; any other host is refused."""
    if host and host.lower() != "localhost":
        raise StoreError(
            f"store URL {url!r} names the host {host!r}, and a file store is local: "
            "use file:///abs/path or file:relative/path"
        )
    path = unquote(path)
    if not path:
        raise StoreError(f"store URL {url!r} has no path: use file:///abs/path or file:rel/path")
    if any(unicodedata.category(c) == "Cc" for c in path):
        raise StoreError(
            f"store URL {url!r} has a control character in its path: give a plain directory name"
        )
    return path


def _check_s3_options(options: dict[str, str]) -> None:
    if "endpoint_url" in options:
        check_endpoint_url(options["endpoint_url"], "option endpoint_url")
    if "region" in options:
        check_region(options["region"], "option region")
    if "max_concurrency" in options:
        value = options["max_concurrency"]
        if not (value.isascii() and value.isdigit()):  # int() would take '٣' and ' 3 '
            raise StoreError(f"option max_concurrency {shown(value)} is not a whole number")
        check_max_concurrency(int(value), "option max_concurrency")
    check_sse(
        options.get("sse"),
        options.get("kms_key_id"),
        sse_arg="option sse",
        kms_arg="option kms_key_id",
    )


@asynccontextmanager
async def open_store(url: str | None = None) -> AsyncIterator[DoneStore]:
    """Open the store a URL names (``ASTEPS_STORE`` or ``file:.asteps`` by default),
    and close it on leaving the block."""
    async with _store_for(parse_store_url(url or default_store_url())) as store:
        yield store


def _store_for(parsed: StoreURL) -> DoneStore:
    if parsed.scheme == "memory":
        return MemoryStore()
    if parsed.scheme == "file":
        return FileStore(parsed.location)
    from .s3 import S3Store  # imports aioboto3: only when an S3 store is asked for

    o = parsed.options
    return S3Store(
        parsed.location,
        key_root=parsed.key_root,
        endpoint_url=o.get("endpoint_url"),
        region_name=o.get("region"),
        sse=o.get("sse"),
        sse_kms_key_id=o.get("kms_key_id"),
        max_concurrency=int(o.get("max_concurrency", 64)),
    )
