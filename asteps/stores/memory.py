"""MemoryStore: done markers in a dict, for tests, demos and dry experiments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class MemoryStore:
    """Keeps markers in memory as ``{prefix + name: body}``; lost with the process."""

    def __init__(self) -> None:
        self.objects: dict[str, Mapping[str, Any]] = {}

    async def list_done(self, prefix: str) -> set[str]:
        cut = len(prefix)
        return {key[cut:] for key in self.objects if key.startswith(prefix)}

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        # Kept as given, not copied: the runner passes one immutable body per run.
        self.objects[prefix + name] = body

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        for name in names:
            self.objects.pop(prefix + name, None)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self.objects)} markers)"
