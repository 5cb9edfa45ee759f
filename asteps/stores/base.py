"""The store protocol: where done markers live.

A store knows three things: list the step names done under a prefix, mark one
done, and remove some. The key of a marker is ``prefix + name`` and its body
is simpleflow's JSON ``{"run_id", "workflow_id", "version"}``; nothing ever
reads the body to decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from .._concurrency import for_each
from .._names import covers, validate_patterns


@runtime_checkable
class DoneStore(Protocol):
    """Where done markers are kept. Implementations: MemoryStore, FileStore, S3Store."""

    async def list_done(self, prefix: str) -> set[str]:
        """The names of the steps done under ``prefix`` (the prefix stripped)."""
        ...

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        """Record ``name`` as done under ``prefix``; returns once it is durable."""
        ...

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        """Remove the markers of exactly these names; absent ones are ignored."""
        ...


async def list_done_many(
    store: DoneStore, prefixes: Iterable[str], *, concurrency: int = 32
) -> dict[str, frozenset[str]]:
    """List several prefixes concurrently, at most ``concurrency`` at once.

    The result is in the order of ``prefixes`` (each listed once).
    """
    results = dict.fromkeys(prefixes, frozenset[str]())

    async def one(prefix: str) -> None:
        results[prefix] = frozenset(await store.list_done(prefix))

    await for_each(list(results), one, concurrency=concurrency)
    return results


def matching(names: Iterable[str], patterns: str | Iterable[str]) -> list[str]:
    """The names some pattern covers, sorted (hierarchically: ``a`` covers ``a.b``)."""
    wanted = validate_patterns(patterns)
    return sorted(n for n in names if any(covers(p, n) for p in wanted))


async def unmark_matching(
    store: DoneStore, prefix: str, patterns: str | Iterable[str], *, dry_run: bool = False
) -> list[str]:
    """Remove every marker under ``prefix`` that a pattern covers; return their names."""
    names = matching(await store.list_done(prefix), patterns)
    if names and not dry_run:
        await store.unmark(prefix, names)
    return names
