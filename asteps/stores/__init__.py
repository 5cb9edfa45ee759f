"""Done-marker stores: the DoneStore protocol and its implementations."""

import importlib
from typing import TYPE_CHECKING, Any

from .base import BaseStore, ChecksPrefixes, DoneStore, HoldsClaims, ReadsMarkers
from .file import FileStore
from .helpers import list_done_many, matching, unmark_matching
from .memory import MemoryStore
from .urls import default_store_url, open_store, parse_store_url

if TYPE_CHECKING:
    from .s3 import S3Store

__all__ = [
    "BaseStore",
    "ChecksPrefixes",
    "DoneStore",
    "FileStore",
    "HoldsClaims",
    "MemoryStore",
    "ReadsMarkers",
    "S3Store",
    "default_store_url",
    "list_done_many",
    "matching",
    "open_store",
    "parse_store_url",
    "unmark_matching",
]


def __getattr__(name: str) -> Any:
    # S3Store imports aioboto3: loaded on first use (see asteps/__init__.py).
    if name == "S3Store":
        return importlib.import_module(".s3", __name__).S3Store
    raise AttributeError(f"module 'asteps.stores' has no attribute {name!r}")
