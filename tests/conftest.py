"""Shared fixtures. S3 and SWF fixtures live in conftest_aws (loaded below)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from asteps import MemoryStore


class CountingStore(MemoryStore):
    """A real MemoryStore that also counts the calls made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def list_done(self, prefix: str) -> set[str]:
        self.calls["list_done"] += 1
        return await super().list_done(prefix)

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        self.calls["mark_done"] += 1
        await super().mark_done(prefix, name, body)

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        self.calls["unmark"] += 1
        await super().unmark(prefix, names)


class FailingMarkStore(MemoryStore):
    """Lists fine, but every marker write fails, as a store that lost its disk."""

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        raise OSError("disk full")


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()
