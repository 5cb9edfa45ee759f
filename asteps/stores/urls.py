"""Store URLs, parsed in one place for the CLI, the demo and services.

- ``s3://bucket[/key-root]?endpoint_url=...&region=...&sse=AES256|aws:kms&kms_key_id=...``
- ``file:///absolute/path`` or ``file:relative/path``
- ``memory://``

``ASTEPS_STORE`` in the environment picks the default; without it the default
is the embedded FileStore at ``./.asteps``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import StoreError
from .base import DoneStore
from .file import FileStore
from .memory import MemoryStore

ENV_VAR = "ASTEPS_STORE"
DEFAULT_URL = "file:.asteps"
_S3_OPTIONS = {"endpoint_url", "region", "sse", "kms_key_id", "max_concurrency"}


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL."""

    scheme: str
    location: str
    options: dict[str, str] = field(default_factory=dict)


def default_store_url() -> str:
    """``$ASTEPS_STORE``, else ``file:.asteps``."""
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL; errors say what a valid one looks like."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return StoreURL("memory", "")
    if scheme == "file":
        path = unquote(parts.netloc + parts.path) if parts.netloc else unquote(parts.path)
        if not path:
            raise StoreError(
                f"store URL {url!r} has no path: use file:///abs/path or file:rel/path"
            )
        return StoreURL("file", path)
    if scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"store URL {url!r} has no bucket: use s3://my-bucket")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - _S3_OPTIONS
        if unknown:
            raise StoreError(
                f"store URL {url!r} has unknown option(s) {sorted(unknown)}; "
                f"known: {sorted(_S3_OPTIONS)}"
            )
        return StoreURL("s3", parts.netloc, options)
    raise StoreError(
        f"store URL {url!r} is not understood: use s3://bucket, file:path or memory://"
    )


@asynccontextmanager
async def open_store(url: str | None = None) -> AsyncIterator[DoneStore]:
    """Open the store a URL names (``ASTEPS_STORE`` or ``file:.asteps`` by default)."""
    parsed = parse_store_url(url or default_store_url())
    if parsed.scheme == "memory":
        yield MemoryStore()
    elif parsed.scheme == "file":
        yield FileStore(parsed.location)
    else:
        from .s3 import S3Store

        o = parsed.options
        async with S3Store(
            parsed.location,
            endpoint_url=o.get("endpoint_url"),
            region_name=o.get("region"),
            sse=o.get("sse"),
            sse_kms_key_id=o.get("kms_key_id"),
            max_concurrency=int(o.get("max_concurrency", 64)),
        ) as store:
            yield store
