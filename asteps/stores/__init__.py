"""Done-marker stores: the DoneStore protocol and its implementations."""

from .base import DoneStore, list_done_many, matching, unmark_matching
from .file import FileStore
from .memory import MemoryStore
from .s3 import S3Store
from .urls import default_store_url, open_store, parse_store_url

__all__ = [
    "DoneStore",
    "FileStore",
    "MemoryStore",
    "S3Store",
    "default_store_url",
    "list_done_many",
    "matching",
    "open_store",
    "parse_store_url",
    "unmark_matching",
]
