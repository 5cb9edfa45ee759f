"""Helpers over any store: several prefixes listed at once, the markers some
patterns cover, removed. While telemetry is on, their store calls are spans,
as every store call is (they sit above ``_telemetry``, which builds on
``base``)."""

from __future__ import annotations

from collections.abc import Iterable

from .._concurrency import for_each
from .._names import covers, validate_patterns
from .._telemetry import traced_store
from .base import DoneStore


async def list_done_many(
    store: DoneStore, prefixes: Iterable[str], *, concurrency: int = 32
) -> dict[str, frozenset[str]]:
    """List several prefixes concurrently, at most ``concurrency`` at once.

    The result is in the order of ``prefixes`` (each listed once). While
    telemetry is on, each listing is a span, as every store call is. A
    failure cancels the other listings and comes out as an exception group
    (``except* StoreError``), as from a task group: see ``for_each``.
    """
    store = traced_store(store)
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
    """Remove every marker under ``prefix`` that a pattern covers; return their names.

    While telemetry is on, the listing and the removal are spans, as every
    store call is.
    """
    store = traced_store(store)
    names = matching(await store.list_done(prefix), patterns)
    if names and not dry_run:
        await store.unmark(prefix, names)
    return names
