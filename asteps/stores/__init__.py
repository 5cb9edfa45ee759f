"""Done-marker stores: the DoneStore protocol and its implementations."""

from .base import DoneStore, list_done_many, matching, unmark_matching
from .file import FileStore
from .memory import MemoryStore

__all__ = ["DoneStore", "FileStore", "MemoryStore", "list_done_many", "matching", "unmark_matching"]
