"""BaseStore: the lifecycle a store gets by subclassing it, so that it writes
only its own operations; and the optional capabilities, checked one way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import anyio
import pytest

from asteps import MemoryStore
from asteps.stores import BaseStore, DoneStore, HoldsClaims, ReadsMarkers


class ListStore(BaseStore):
    """A store of one's own: only its three operations, the lifecycle inherited."""

    def __init__(self) -> None:
        super().__init__()
        self.marked: dict[str, Mapping[str, Any]] = {}

    async def list_done(self, prefix: str) -> set[str]:
        self._check_usable()
        return {k[len(prefix) :] for k in self.marked if k.startswith(prefix)}

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        self._check_usable()
        self.marked[prefix + name] = body

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        self._check_usable()
        for name in names:
            self.marked.pop(prefix + name, None)


class HoldingStore(ListStore):
    """A store that holds a resource: it must be opened, and releases it once."""

    needs_opening = True

    def __init__(self, fail_open: BaseException | None = None) -> None:
        super().__init__()
        self.fail_open = fail_open
        self.events: list[str] = []

    async def _open(self) -> None:
        self.events.append("acquired")
        if self.fail_open is not None:
            raise self.fail_open

    async def _close(self) -> None:
        self.events.append("released")


async def test_a_store_of_ones_own_gets_the_lifecycle_of_every_store() -> None:
    store = ListStore()
    assert isinstance(store, DoneStore)
    await store.mark_done("wf/", "a", {})  # holds nothing: usable unopened
    async with store as opened:
        assert opened is store
        assert await store.list_done("wf/") == {"a"}
        with pytest.raises(RuntimeError, match="already open: share it"):
            await store.__aenter__()
    await store.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="ListStore is closed: create a new one"):
        await store.list_done("wf/")
    with pytest.raises(RuntimeError, match="closed and cannot be reopened"):
        await store.__aenter__()


async def test_a_store_that_holds_a_resource_refuses_calls_until_opened_and_releases_once() -> None:
    store = HoldingStore()
    with pytest.raises(RuntimeError, match="not open: use 'async with'"):
        await store.list_done("wf/")
    async with store:
        await store.mark_done("wf/", "a", {})
    await store.aclose()
    assert store.events == ["acquired", "released"]


async def test_a_failed_open_releases_what_it_acquired_and_raises() -> None:
    store = HoldingStore(fail_open=OSError("no route"))
    with pytest.raises(OSError, match="no route"):
        async with store:
            pass
    assert store.events == ["acquired", "released"]
    with pytest.raises(RuntimeError, match="closed"):
        await store.list_done("wf/")


async def test_a_close_cancelled_by_its_caller_still_releases() -> None:
    store = HoldingStore()
    async with store:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.aclose()  # shielded: the cancellation does not cut it short
    assert store.events == ["acquired", "released"]


class ClaimsWithoutBodies(ListStore):
    async def create_claim(self, prefix: str, name: str, body: Mapping[str, Any]) -> str | None:
        return "1"

    async def read_claim(self, prefix: str, name: str) -> str | None:
        return None

    async def replace_claim(
        self, prefix: str, name: str, token: str, body: Mapping[str, Any]
    ) -> str | None:
        return None

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        return None


def test_holding_claims_includes_reading_markers_so_one_check_says_it_all() -> None:
    assert isinstance(MemoryStore(), HoldsClaims)
    assert isinstance(MemoryStore(), ReadsMarkers)
    assert not isinstance(ClaimsWithoutBodies(), HoldsClaims)  # exclusive steps read markers
    assert not isinstance(ListStore(), ReadsMarkers)


def test_the_old_name_of_the_base_class_still_works_with_a_warning() -> None:
    from asteps.stores import base

    with pytest.warns(DeprecationWarning, match="now BaseStore"):
        assert base.HoldsNothing is BaseStore
