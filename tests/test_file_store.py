"""FileStore: one real file per done step, at the S3 key's path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asteps import FileStore, Runner, StoreError, unmark_matching
from asteps.stores import list_done_many


async def test_markers_are_files_at_the_s3_key_path(tmp_path: Path) -> None:
    await Runner(FileStore(tmp_path), "wf-1", run_id="r", version="1").step("a.b", lambda: None)
    marker = tmp_path / "wf-1" / "steps" / "a.b"
    assert json.loads(marker.read_text()) == {"run_id": "r", "workflow_id": "wf-1", "version": "1"}
    assert sorted(p.name for p in marker.parent.iterdir()) == ["a.b"]


async def test_a_new_process_sees_what_an_earlier_one_marked(tmp_path: Path) -> None:
    await Runner(FileStore(tmp_path), "wf").step("a", lambda: None)
    outcome = await Runner(FileStore(str(tmp_path)), "wf").step("a", lambda: None)
    assert outcome.status == "skipped"


async def test_listing_a_missing_prefix_is_empty(tmp_path: Path) -> None:
    assert await FileStore(tmp_path / "nowhere").list_done("wf/steps/") == set()


async def test_listing_ignores_temporary_files_and_directories(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.mark_done("wf/steps/", "a", {})
    (tmp_path / "wf" / "steps" / ".tmp-abc").write_text("half written")
    (tmp_path / "wf" / "steps" / "sub").mkdir()
    assert await store.list_done("wf/steps/") == {"a"}


async def test_prefixes_need_not_end_with_a_slash(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.mark_done("wf/step-", "a", {})
    await store.mark_done("wf/other-", "b", {})
    assert (tmp_path / "wf" / "step-a").is_file()
    assert await store.list_done("wf/step-") == {"a"}


async def test_unmark_removes_exact_names_and_ignores_absent_ones(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for name in ("a", "a.b", "ab"):
        await store.mark_done("wf/steps/", name, {})
    await store.unmark("wf/steps/", ["a.b", "never-done"])
    assert await store.list_done("wf/steps/") == {"a", "ab"}


async def test_unmark_by_pattern_is_hierarchical(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for name in ("a", "a.b", "a.b.c", "ab", "b"):
        await store.mark_done("wf/steps/", name, {})
    assert await unmark_matching(store, "wf/steps/", "a", dry_run=True) == ["a", "a.b", "a.b.c"]
    assert await store.list_done("wf/steps/") == {"a", "a.b", "a.b.c", "ab", "b"}
    assert await unmark_matching(store, "wf/steps/", ["a"]) == ["a", "a.b", "a.b.c"]
    assert await store.list_done("wf/steps/") == {"ab", "b"}


async def test_many_prefixes_are_listed_at_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.mark_done("w1/steps/", "a", {})
    await store.mark_done("w2/steps/", "b", {})
    got = await list_done_many(store, ["w1/steps/", "w2/steps/", "w3/steps/"], concurrency=2)
    assert got == {"w1/steps/": {"a"}, "w2/steps/": {"b"}, "w3/steps/": frozenset()}


async def test_a_root_that_is_a_file_gives_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot write marker"):
        await FileStore(blocker).mark_done("wf/steps/", "a", {})
