"""Every store behaves the same: the same lifecycle, the same listing, the same
helpers. Each test runs on a MemoryStore and a FileStore on real files, each on
asyncio and on trio, and on an S3Store against moto over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from asteps import DoneStore, FileStore, MemoryStore, S3Store, StoreError
from asteps.stores import list_done_many, unmark_matching
from asteps.testing import MotoServer

# S3Store goes through aioboto3, which runs on asyncio only: the S3 case runs on
# asyncio alone, the others on both backends (anyio_backend, in conftest.py).
STORES = [
    pytest.param(backend, store, id=f"{store}-{backend}")
    for store in ("memory", "file", "s3")
    for backend in (("asyncio",) if store == "s3" else ("asyncio", "trio"))
]
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize(("anyio_backend", "store_kind"), STORES),
]


@dataclass
class Kind:
    """How to build one kind of store, and how to write a key behind its back."""

    make: Callable[[], DoneStore]
    put_raw: Callable[[DoneStore, str], Awaitable[None]]


async def _put_memory(store: DoneStore, key: str) -> None:
    await store.mark_done("", key, {})  # MemoryStore keeps any key as given


@pytest.fixture
async def kind(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Kind]:
    if store_kind == "memory":
        yield Kind(MemoryStore, _put_memory)
    elif store_kind == "file":

        async def put_file(store: DoneStore, key: str) -> None:
            path = tmp_path / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")

        yield Kind(lambda: FileStore(tmp_path), put_file)
    else:
        aws: MotoServer = request.getfixturevalue("aws")
        async with S3Store("steps", endpoint_url=aws.endpoint_url) as setup:
            await setup.client.create_bucket(Bucket="steps")

            async def put_s3(store: DoneStore, key: str) -> None:
                await setup.client.put_object(Bucket="steps", Key=key, Body=b"{}")

            yield Kind(lambda: S3Store("steps", endpoint_url=aws.endpoint_url), put_s3)


async def test_every_store_is_a_done_store_and_an_async_context_manager(kind: Kind) -> None:
    store = kind.make()
    assert isinstance(store, DoneStore)
    async with store as opened:
        assert opened is store
        await store.mark_done("wf/steps/", "a", {})
        assert await store.list_done("wf/steps/") == {"a"}


async def test_a_store_opened_twice_says_to_share_it(kind: Kind) -> None:
    """Misuse is a RuntimeError, as in httpx: never a StoreError, which the CLI
    reports as a store it cannot reach."""
    async with kind.make() as store:
        with pytest.raises(RuntimeError, match="already open: share it") as caught:
            await store.__aenter__()
        assert not isinstance(caught.value, StoreError)


async def test_a_closed_store_cannot_be_reopened(kind: Kind) -> None:
    store = kind.make()
    async with store:
        pass
    with pytest.raises(RuntimeError, match="closed and cannot be reopened: create a new one"):
        await store.__aenter__()


async def test_aclose_is_idempotent_even_on_a_store_never_opened(kind: Kind) -> None:
    store = kind.make()
    await store.aclose()
    await store.aclose()
    async with kind.make() as other:
        await other.aclose()
    await other.aclose()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.list_done("wf/steps/"),
        lambda s: s.mark_done("wf/steps/", "a", {}),
        lambda s: s.unmark("wf/steps/", ["a"]),
    ],
    ids=["list_done", "mark_done", "unmark"],
)
async def test_a_closed_store_refuses_every_call(
    kind: Kind, call: Callable[[DoneStore], Awaitable[object]]
) -> None:
    async with kind.make() as store:
        pass
    with pytest.raises(RuntimeError, match="is closed: create a new one"):
        await call(store)


async def test_a_listing_holds_only_valid_names_directly_under_the_prefix(kind: Kind) -> None:
    async with kind.make() as store:
        for key in (
            "wf/steps/a",
            "wf/steps/a.b",
            "wf/steps/deeper/c",  # not directly under the prefix
            "wf/steps/ spaced",  # not a valid step name
            "wf/steps-elsewhere",
            "wf/other/d",
        ):
            await kind.put_raw(store, key)
        assert await store.list_done("wf/steps/") == {"a", "a.b"}
        assert await store.list_done("wf/steps/deeper/") == {"c"}


async def test_the_helpers_serve_every_store(kind: Kind) -> None:
    async with kind.make() as store:
        for name in ("a", "a.b", "ab"):
            await store.mark_done("w1/steps/", name, {})
        await store.mark_done("w2/steps/", "b", {})
        listed = await list_done_many(store, ["w1/steps/", "w2/steps/", "w3/steps/"])
        assert listed == {
            "w1/steps/": {"a", "a.b", "ab"},
            "w2/steps/": {"b"},
            "w3/steps/": frozenset(),
        }
        assert await unmark_matching(store, "w1/steps/", "a") == ["a", "a.b"]
        assert await store.list_done("w1/steps/") == {"ab"}
