"""MemoryStore: done markers in a dict, for tests, demos and dry experiments."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from .._names import is_valid_name
from .base import BaseStore
from .discovery import listing_order


class MemoryStore(BaseStore):
    """Keeps markers in memory, lost with the process.

    Markers are grouped by the part of the key before its last ``/`` (the
    "directory", as on disk), so listing one workflow's prefix costs its own
    markers only, not every marker in the store.

    It needs no opening; ``async with`` and ``aclose()`` follow the rule of
    every store (see :class:`~asteps.stores.base.BaseStore`): once closed, it
    refuses every call.
    """

    def __init__(self) -> None:
        super().__init__()
        self._dirs: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._claims: dict[str, tuple[str, Mapping[str, Any]]] = {}
        self._tokens = itertools.count(1)

    @property
    def objects(self) -> dict[str, Mapping[str, Any]]:
        """Every marker as ``{key: body}``, the way S3 would list them."""
        return {
            f"{d}/{leaf}" if d else leaf: body
            for d, leaves in self._dirs.items()
            for leaf, body in leaves.items()
        }

    async def list_done(self, prefix: str) -> set[str]:
        self._check_usable()
        directory, _, start = prefix.rpartition("/")
        cut = len(start)
        return {
            leaf[cut:]
            for leaf in self._dirs.get(directory, {})
            if leaf.startswith(start) and is_valid_name(leaf[cut:])
        }

    async def list_workflows(
        self, root: str = "", *, start_after: str | None = None
    ) -> AsyncGenerator[str, None]:
        """The names of the "directories" directly under ``root`` that hold a
        marker somewhere below, in S3's order, those after ``start_after`` only."""
        self._check_usable()
        cut = len(root)
        # A directory "d" holds keys "d/<leaf>": they fall under root's common
        # prefix named by the first segment after root, as on S3.
        names = {
            f"{directory}/"[cut:].partition("/")[0]
            for directory, leaves in self._dirs.items()
            if leaves and directory and f"{directory}/".startswith(root) and len(directory) >= cut
        }
        for name in sorted(names, key=listing_order):
            if start_after is None or listing_order(name) > listing_order(start_after):
                yield name

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        self._check_usable()
        directory, _, leaf = (prefix + name).rpartition("/")
        # Kept as given, not copied: the runner passes one immutable body per run.
        self._dirs.setdefault(directory, {})[leaf] = body

    async def read_marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        self._check_usable()
        directory, _, leaf = (prefix + name).rpartition("/")
        return self._dirs.get(directory, {}).get(leaf)

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        self._check_usable()
        for name in names:
            directory, _, leaf = (prefix + name).rpartition("/")
            self._dirs.get(directory, {}).pop(leaf, None)

    # -- claims of exclusive steps (see asteps.stores.base.HoldsClaims) ------------
    # One event loop: each operation is atomic, so claims exclude the runners
    # of one process.

    async def create_claim(self, prefix: str, name: str, body: Mapping[str, Any]) -> str | None:
        self._check_usable()
        key = prefix + name
        if key in self._claims:
            return None
        token = str(next(self._tokens))
        self._claims[key] = (token, body)
        return token

    async def read_claim(self, prefix: str, name: str) -> str | None:
        self._check_usable()
        claim = self._claims.get(prefix + name)
        return None if claim is None else claim[0]

    async def replace_claim(
        self, prefix: str, name: str, token: str, body: Mapping[str, Any]
    ) -> str | None:
        self._check_usable()
        key = prefix + name
        claim = self._claims.get(key)
        if claim is None or claim[0] != token:
            return None
        new = str(next(self._tokens))
        self._claims[key] = (new, body)
        return new

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        self._check_usable()
        key = prefix + name
        claim = self._claims.get(key)
        if claim is not None and claim[0] == token:
            del self._claims[key]

    def __repr__(self) -> str:
        return f"MemoryStore({sum(map(len, self._dirs.values()))} markers)"
