"""MemoryStore: done markers in a dict, for tests, demos and dry experiments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class MemoryStore:
    """Keeps markers in memory, lost with the process.

    Markers are grouped by the part of the key before its last ``/`` (the
    "directory", as on disk), so listing one workflow's prefix costs its own
    markers only, not every marker in the store.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, dict[str, Mapping[str, Any]]] = {}

    @property
    def objects(self) -> dict[str, Mapping[str, Any]]:
        """Every marker as ``{key: body}``, the way S3 would list them."""
        return {
            f"{d}/{leaf}" if d else leaf: body
            for d, leaves in self._dirs.items()
            for leaf, body in leaves.items()
        }

    async def list_done(self, prefix: str) -> set[str]:
        directory, _, start = prefix.rpartition("/")
        leaves = self._dirs.get(directory, {})
        if not start:
            return set(leaves)
        cut = len(start)
        return {leaf[cut:] for leaf in leaves if leaf.startswith(start)}

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        directory, _, leaf = (prefix + name).rpartition("/")
        # Kept as given, not copied: the runner passes one immutable body per run.
        self._dirs.setdefault(directory, {})[leaf] = body

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        for name in names:
            directory, _, leaf = (prefix + name).rpartition("/")
            self._dirs.get(directory, {}).pop(leaf, None)

    def __repr__(self) -> str:
        return f"MemoryStore({sum(map(len, self._dirs.values()))} markers)"
