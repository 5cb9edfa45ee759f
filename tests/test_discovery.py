"""Workflow ids from the store itself: a delimited listing of its root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asteps import FileStore, MemoryStore, Runner, S3Store
from asteps._batch import BatchRun
from asteps.errors import InvalidStepName, StoreError
from asteps.stores.discovery import check_discoverable, discover_workflows
from asteps.testing import MotoServer

BODY = {"run_id": "r", "workflow_id": "w", "version": None}


@pytest.fixture(params=["memory", "file", "s3"])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, moto: MotoServer
) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "file":
        yield FileStore(tmp_path / "store")
    else:
        moto.reset()
        async with S3Store(
            "steps", endpoint_url=moto.endpoint_url, session=moto.session()
        ) as store:
            await store.client.create_bucket(Bucket="steps")
            yield store


async def found(store: Any, template: str = "{workflow_id}/steps/") -> list[str]:
    return sorted([wid async for wid in discover_workflows(store, template)])


async def test_every_store_finds_each_workflow_that_has_markers_once(any_store: Any) -> None:
    for wid, names in {"w1": ["a", "b"], "w2": ["a"], "customer-42": ["x.y"]}.items():
        for name in names:
            await any_store.mark_done(f"{wid}/steps/", name, BODY)
    assert await found(any_store) == ["customer-42", "w1", "w2"]


async def test_an_empty_store_has_no_workflows(any_store: Any) -> None:
    assert await found(any_store) == []


async def test_keys_at_the_root_are_not_workflows(any_store: Any) -> None:
    await any_store.mark_done("", "stray", BODY)
    await any_store.mark_done("w1/steps/", "a", BODY)
    assert await found(any_store) == ["w1"]


async def test_a_custom_template_under_the_workflow_directory_is_discovered(
    any_store: Any,
) -> None:
    await any_store.mark_done("w1/v2/done/", "a", BODY)
    assert await found(any_store, "{workflow_id}/v2/done/") == ["w1"]


@pytest.mark.parametrize(
    "template",
    ["steps/{workflow_id}/", "{region}/{workflow_id}/steps/", "{workflow_id}-steps/", "x"],
)
def test_a_template_that_does_not_start_with_the_workflow_directory_is_refused(
    template: str,
) -> None:
    with pytest.raises(InvalidStepName, match=r"must start with '\{workflow_id\}/'"):
        check_discoverable(template)


async def test_discovery_refuses_such_a_template_before_any_io() -> None:
    with pytest.raises(InvalidStepName, match="--ids instead"):
        await found(object(), "steps/{workflow_id}/")


async def test_a_store_that_cannot_list_workflows_says_so() -> None:
    with pytest.raises(StoreError, match="cannot list workflows"):
        await found(object())


async def test_the_file_store_lists_only_directories_and_skips_impossible_ids(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    await store.mark_done("w1/steps/", "a", BODY)
    (tmp_path / "notes.txt").write_text("not a workflow")
    (tmp_path / "bad\x1bid").mkdir()
    assert await found(store) == ["w1"]


async def test_the_file_store_streams_a_large_root_in_batches(tmp_path: Path) -> None:
    for i in range(2_500):
        (tmp_path / f"w{i:04d}").mkdir()
    assert len(await found(FileStore(tmp_path))) == 2_500


# -- S3: one request per 1,000 ids, streamed -----------------------------------------


async def put_workflows(s3: S3Store, count: int) -> None:
    limit = anyio.Semaphore(32)

    async def put(i: int) -> None:
        async with limit:
            await s3.client.put_object(Bucket="steps", Key=f"w{i:05d}/steps/only", Body=b"{}")

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(put, i)


async def test_discovering_2500_workflows_costs_3_listing_requests_made_as_read(
    s3: S3Store,
) -> None:
    await put_workflows(s3, 2_500)
    s3.counter.clear()  # type: ignore[attr-defined]
    names = discover_workflows(s3, "{workflow_id}/steps/")
    assert await anext(names) == "w00000"
    assert s3.counter.calls["ListObjectsV2"] == 1  # type: ignore[attr-defined]  # streamed
    rest = [wid async for wid in names]
    assert rest == [f"w{i:05d}" for i in range(1, 2_500)]
    assert dict(s3.counter.calls) == {"ListObjectsV2": 3}  # type: ignore[attr-defined]


async def test_s3_discovery_stays_under_the_key_root(aws: MotoServer) -> None:
    async with S3Store("steps", endpoint_url=aws.endpoint_url, key_root="team-a") as store:
        await store.client.create_bucket(Bucket="steps")
        await store.client.put_object(Bucket="steps", Key="team-b/w9/steps/a", Body=b"{}")
        await store.mark_done("w1/steps/", "a", BODY)
        assert await found(store) == ["w1"]


# -- a batch over discovered ids ----------------------------------------------------------


async def test_a_batch_runs_every_discovered_workflow(any_store: Any) -> None:
    for wid in ("w1", "w2", "w3"):
        await any_store.mark_done(f"{wid}/steps/", "fetch", BODY)
    await any_store.mark_done("w2/steps/", "export", BODY)

    async def flow(runner: Runner, **_: Any) -> None:
        await runner.step("fetch", lambda: None)
        await runner.step("export", lambda: None)

    batch = BatchRun(flow, any_store, missing=["export"], only_with_markers=True)
    summary = await batch.run(discover_workflows(any_store, batch.prefix))
    assert (summary.succeeded, summary.passed_over) == (2, 1)
    assert summary.steps == {"skipped": 2, "completed": 2}


async def test_a_stopped_batch_over_discovered_ids_lists_no_further_and_says_where_it_stopped() -> (
    None
):
    store = MemoryStore()
    for i in range(1000):
        await store.mark_done(f"w{i:03d}/steps/", "a", BODY)
    stop = anyio.Event()
    ran: list[str] = []

    async def flow(runner: Runner, **_: Any) -> None:
        ran.append(runner.workflow_id)
        if runner.workflow_id == "w003":
            stop.set()
            await anyio.sleep_forever()

    summary = await BatchRun(flow, store, concurrency=2).run(
        discover_workflows(store, "{workflow_id}/steps/"), stop=stop
    )
    assert summary.interrupted
    handled = {*ran, *summary.unfinished_ids}
    assert len(handled) <= 20  # what was in flight when it stopped: the rest is not listed
    assert summary.stopped_at == f"after workflow {max(handled)!r} of the store's listing"


async def test_the_file_store_does_not_discover_a_directory_that_links_out_of_its_root(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    store = FileStore(root)
    await store.mark_done("w1/steps/", "a", BODY)
    (tmp_path / "elsewhere" / "steps").mkdir(parents=True)
    (tmp_path / "elsewhere" / "steps" / "a").write_text("{}")
    (root / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "alias").symlink_to(root / "w1", target_is_directory=True)  # inside: kept
    assert await found(store) == ["alias", "w1"]


def test_discovery_refuses_before_the_first_anext() -> None:
    with pytest.raises(InvalidStepName, match="--ids instead"):
        discover_workflows(MemoryStore(), "steps/{workflow_id}/")  # not iterated
    with pytest.raises(StoreError, match="cannot list workflows"):
        discover_workflows(object(), "{workflow_id}/steps/")
