"""FileStore: one real file per done step, at the S3 key's path. On asyncio and
on trio."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from asteps import FileStore, Runner, StoreError, UnmarkError, unmark_matching
from asteps.stores import list_done_many
from asteps.stores.file import STALE_TMP_AGE, TMP_PREFIX

pytestmark = pytest.mark.anyio


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


async def test_unmark_tries_every_name_and_names_the_markers_it_did_not_remove(
    tmp_path: Path,
) -> None:
    # Before, it stopped at the first marker it could not remove: the names
    # after it were never tried, and the error named that one alone.
    store = FileStore(tmp_path)
    for name in ("a", "c"):
        await store.mark_done("wf/steps/", name, {})
    (tmp_path / "wf" / "steps" / "b").mkdir()  # a marker's path it cannot unlink
    with pytest.raises(UnmarkError, match=r"1 of 3 marker\(s\) .* not removed: 'b'") as caught:
        await store.unmark("wf/steps/", ["a", "b", "c"])
    assert caught.value.not_removed == ["b"]
    assert await store.list_done("wf/steps/") == set()
    assert (tmp_path / "wf" / "steps" / "b").is_dir()


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


# -- durability, permissions and leftovers ---------------------------------------


async def test_stale_temporary_files_are_removed_by_a_listing_fresh_ones_kept(
    tmp_path: Path,
) -> None:
    steps = tmp_path / "wf" / "steps"
    steps.mkdir(parents=True)
    stale, fresh = steps / f"{TMP_PREFIX}crashed", steps / f"{TMP_PREFIX}being-written"
    stale.write_text("half")
    fresh.write_text("half")
    an_hour_and_more_ago = time.time() - STALE_TMP_AGE - 60
    os.utime(stale, (an_hour_and_more_ago, an_hour_and_more_ago))

    assert await FileStore(tmp_path).list_done("wf/steps/") == set()
    assert sorted(p.name for p in steps.iterdir()) == [fresh.name]


async def test_a_leftover_that_cannot_be_removed_does_not_stop_the_listing(
    tmp_path: Path,
) -> None:
    steps = tmp_path / "wf" / "steps"
    steps.mkdir(parents=True)
    (steps / "a").write_text("{}")
    stuck = steps / f"{TMP_PREFIX}stuck"
    stuck.mkdir()  # unlink() refuses a directory, even for root
    os.utime(stuck, (0, 0))
    assert await FileStore(tmp_path).list_done("wf/steps/") == {"a"}
    assert stuck.is_dir()


async def test_every_directory_created_for_a_marker_is_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new directory's entry lives in its parent: each parent is fsynced. The
    real os.fsync runs; the spy only records which directories it was given."""
    synced: set[tuple[int, int]] = set()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    root = tmp_path / "store"
    await FileStore(root).mark_done("wf/steps/", "a", {})

    def identity(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_dev, st.st_ino

    for directory in (tmp_path, root, root / "wf", root / "wf" / "steps"):
        assert identity(directory) in synced, directory


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], ids=oct)
async def test_markers_get_the_mode_of_any_new_file(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        await FileStore(tmp_path).mark_done("wf/steps/", "a", {})
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "wf" / "steps" / "a").stat().st_mode)
    assert oct(mode) == oct(0o666 & ~umask)


# -- symbolic links never lead out of the root (issue 19) ------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the store's root, that links may point to."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "steps").mkdir(parents=True)
    (elsewhere / "steps" / "a").write_text('{"result": "secret"}')
    return elsewhere


async def test_a_workflow_directory_that_links_out_of_the_root_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "wf").symlink_to(outside, target_is_directory=True)
    store = FileStore(root)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.mark_done("wf/steps/", "b", {}),
        lambda: store.list_done("wf/steps/"),
        lambda: store.read_marker("wf/steps/", "a"),
        lambda: store.unmark("wf/steps/", ["a"]),
    ]
    for call in calls:
        with pytest.raises(StoreError, match=r"outside the store root.*remove the link"):
            await call()
    assert sorted(p.name for p in (outside / "steps").iterdir()) == ["a"]


async def test_a_prefix_that_climbs_out_of_the_root_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(StoreError, match="outside the store root"):
        await store.mark_done("../x/", "a", {})
    assert not (tmp_path / "x").exists()


async def test_a_name_that_climbs_out_of_the_root_is_refused_nothing_written_or_removed(
    tmp_path: Path, outside: Path
) -> None:
    # Before, only the prefix was checked: a name with '..' (the store's own
    # API takes any string) wrote, read and removed files outside the root.
    store = FileStore(tmp_path / "store")
    climb = "../../../elsewhere/steps/"
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.mark_done("wf/steps/", climb + "b", {}),
        lambda: store.read_marker("wf/steps/", climb + "a"),
        lambda: store.unmark("wf/steps/", [climb + "a"]),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="outside the store root"):
            await call()
    with pytest.raises(StoreError, match="names a directory, not a marker"):
        await store.unmark("wf/steps/", ["a", ".."])
    assert sorted(p.name for p in (outside / "steps").iterdir()) == ["a"]


async def test_links_that_stay_inside_the_root_are_followed(tmp_path: Path) -> None:
    real_root = tmp_path / "real"
    (real_root / "shared").mkdir(parents=True)
    (tmp_path / "root").symlink_to(real_root, target_is_directory=True)  # the root itself
    (real_root / "wf").symlink_to(real_root / "shared", target_is_directory=True)
    store = FileStore(tmp_path / "root")
    await store.mark_done("wf/steps/", "a", {"result": 1})
    assert (real_root / "shared" / "steps" / "a").is_file()
    assert await store.list_done("wf/steps/") == {"a"}
    assert await store.read_marker("wf/steps/", "a") == {"result": 1}


async def test_a_marker_that_links_out_of_the_root_is_not_done_nor_read(
    tmp_path: Path, outside: Path
) -> None:
    store = FileStore(tmp_path / "store")
    await store.mark_done("wf/steps/", "b", {})
    (tmp_path / "store" / "wf" / "steps" / "a").symlink_to(outside / "steps" / "a")
    assert await store.list_done("wf/steps/") == {"b"}
    with pytest.raises(StoreError, match="outside the store root"):
        await store.read_marker("wf/steps/", "a")
    await store.mark_done("wf/steps/", "a", {"result": 2})  # replaces the link itself
    assert (outside / "steps" / "a").read_text() == '{"result": "secret"}'
    assert await store.read_marker("wf/steps/", "a") == {"result": 2}


@pytest.mark.parametrize("planted", ["fifo", "directory"])
def test_what_is_not_a_file_at_a_marker_path_is_no_marker_and_never_waited_on(
    tmp_path: Path, planted: str
) -> None:
    """A FIFO planted at a marker's path made reading it wait for a writer
    for ever (an exclusive runner reads the marker once it holds the claim):
    what is not a regular file is no marker, as the listing says, and is
    never waited on. Read in a child process, its timeout a hang guard."""
    steps = tmp_path / "wf" / "steps"
    steps.mkdir(parents=True)
    if planted == "fifo":
        os.mkfifo(steps / "a")
    else:
        (steps / "a").mkdir()
    read = (
        "import sys, anyio; from asteps import FileStore\n"
        "async def main():\n"
        "    store = FileStore(sys.argv[1])\n"
        "    print(await store.list_done('wf/steps/'), await store.read_marker('wf/steps/', 'a'))\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", read, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["set()", "None"]


# -- claims of exclusive steps stay inside the root too ---------------------------


async def test_a_claims_directory_that_links_out_of_the_root_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / ".asteps-claims").symlink_to(outside, target_is_directory=True)
    store = FileStore(root)
    with pytest.raises(StoreError, match=r"\.asteps-claims.*outside the store root"):
        await store.create_claim("wf/steps/", "a", {"holder": "me"})
    with pytest.raises(StoreError, match=r"\.asteps-claims.*outside the store root"):
        await store.read_claim("wf/steps/", "a")
    assert os.listdir(outside) == ["steps"]  # nothing created there


def claim_path_of_a(root: Path) -> Path:
    """Where the store at ``root`` keeps the claim of step ``a`` of ``wf``, its
    directory made: what a planted link or FIFO would stand in for."""
    claim = root / ".asteps-claims" / "wf" / "steps" / "a"
    claim.parent.mkdir(parents=True)
    return claim


async def test_a_hard_link_planted_at_a_claims_path_is_refused_not_written_through(
    tmp_path: Path, outside: Path
) -> None:
    # O_NOFOLLOW stops symbolic links only: a hard link to a file outside the
    # root, at a claim's path, would have the claim written into that file.
    victim = outside / "steps" / "a"
    claim = claim_path_of_a(tmp_path / "store")
    os.link(victim, claim)
    store = FileStore(tmp_path / "store")
    with pytest.raises(StoreError, match=r"has other links"):
        await store.create_claim("wf/steps/", "a", {"holder": "me"})
    assert victim.read_text() == '{"result": "secret"}'


def test_a_fifo_planted_at_a_claims_path_is_refused_without_waiting(tmp_path: Path) -> None:
    # Opening a FIFO for reading waits for a writer: the claim's reader would
    # hang its thread for good. It is refused at once instead.
    claim = claim_path_of_a(tmp_path / "store")
    os.mkfifo(claim)
    store = FileStore(tmp_path / "store")
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            store._claim_holder("wf/steps/", "a")
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)  # a hang bound, not a speed: it returns at once or never
    assert not reader.is_alive(), "reading a FIFO claim waited for a writer"
    assert isinstance(outcome[0], StoreError)
    assert "not a plain file" in str(outcome[0])


async def test_a_link_planted_at_a_claims_path_is_refused_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    victim = outside / "steps" / "a"
    claim = claim_path_of_a(tmp_path / "store")
    claim.symlink_to(victim)
    store = FileStore(tmp_path / "store")
    with pytest.raises(StoreError, match=r"is a symbolic link"):
        await store.create_claim("wf/steps/", "a", {"holder": "me"})
    with pytest.raises(StoreError, match=r"is a symbolic link"):
        await store.read_claim("wf/steps/", "a")
    assert victim.read_text() == '{"result": "secret"}'
    claim.unlink()  # once the link is gone, the claim works as ever
    assert await store.create_claim("wf/steps/", "a", {"holder": "me"}) is not None


async def test_a_claim_that_cannot_be_written_on_a_full_disk_says_so_and_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, the OSError of the claim's write came out raw, and the claim's
    # file stayed open and locked: no runner of this machine could take the
    # step again until the process ended.
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if threading.current_thread() is not threading.main_thread():  # the store's thread
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    store = FileStore(tmp_path)
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StoreError, match=r"cannot create claim .*disk is not full"):
        await store.create_claim("wf/steps/", "a", {"holder": "me"})
    monkeypatch.setattr(os, "write", real_write)  # space freed
    assert await store.read_claim("wf/steps/", "a") is None
    assert await store.create_claim("wf/steps/", "a", {"holder": "me"}) is not None


# -- a claim file removed or replaced under its holder ------------------------------
# A tmp cleaner or an operator may remove a held claim's file: its holder keeps
# its lock on a file no longer at the path, which no other runner sees.


async def test_a_holder_whose_claim_file_was_removed_finds_the_claim_lost_at_its_renewal(
    tmp_path: Path,
) -> None:
    holder, other = FileStore(tmp_path), FileStore(tmp_path)  # two runners
    claim = tmp_path / ".asteps-claims" / "wf" / "steps" / "a"
    token = await holder.create_claim("wf/steps/", "a", {"holder": "me"})
    assert token is not None
    claim.unlink()  # a tmp cleaner
    assert await holder.replace_claim("wf/steps/", "a", token, {"holder": "me"}) is None
    assert holder._held == {}  # its lock on the removed file dropped
    assert await other.read_claim("wf/steps/", "a") is None
    assert await other.create_claim("wf/steps/", "a", {"holder": "other"}) is not None
    assert json.loads(claim.read_text()) == {"holder": "other"}  # a fresh file at the path


async def test_a_claim_file_removed_and_taken_by_another_is_lost_to_its_holder_not_the_other(
    tmp_path: Path,
) -> None:
    # The other runner may create its claim before the holder's next renewal:
    # that renewal finds the claim lost, and nothing the holder does removes
    # the other's claim.
    holder, other, third = FileStore(tmp_path), FileStore(tmp_path), FileStore(tmp_path)
    claim = tmp_path / ".asteps-claims" / "wf" / "steps" / "a"
    first = await holder.create_claim("wf/steps/", "a", {"holder": "me"})
    second = await holder.create_claim("wf/steps/", "b", {"holder": "me"})
    assert first is not None
    assert second is not None
    claim.unlink()
    (claim.parent / "b").unlink()
    assert await other.create_claim("wf/steps/", "a", {"holder": "other"}) is not None
    assert await other.create_claim("wf/steps/", "b", {"holder": "other"}) is not None
    assert await holder.replace_claim("wf/steps/", "a", first, {"holder": "me"}) is None
    await holder.delete_claim("wf/steps/", "a", first)  # released after a loss: nothing
    await holder.delete_claim("wf/steps/", "b", second)  # released before a renewal saw it
    for name in ("a", "b"):
        assert (claim.parent / name).exists()
        assert await third.read_claim("wf/steps/", name) is not None  # the other's, still
        assert await third.create_claim("wf/steps/", name, {"holder": "third"}) is None


async def test_a_holder_whose_claim_file_was_replaced_finds_the_claim_lost_at_its_renewal(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    claim = tmp_path / ".asteps-claims" / "wf" / "steps" / "a"
    token = await store.create_claim("wf/steps/", "a", {"holder": "me"})
    assert token is not None
    edited = claim.parent / "edited"
    edited.write_text('{"holder": "an operator"}')
    os.replace(edited, claim)  # an editor's save: another file at the path
    assert await store.replace_claim("wf/steps/", "a", token, {"holder": "me"}) is None
    assert await FileStore(tmp_path).create_claim("wf/steps/", "a", {"holder": "o"}) is not None


async def test_a_claim_file_removed_between_its_open_and_its_lock_is_created_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The holder before released it (it removes the file, then drops its lock)
    # between this runner's open and its lock: the lock taken is on a file
    # no longer at the path. The claim is tried again on the path's new file.
    import fcntl

    import asteps.stores._claim_files

    store = FileStore(tmp_path)
    claim = claim_path_of_a(tmp_path)
    claim.write_text('{"holder": "before"}')
    real_flock = fcntl.flock
    locks: list[int] = []

    def flock(fd: int, operation: int) -> None:
        if not locks:
            claim.unlink()  # released meanwhile
        locks.append(fd)
        real_flock(fd, operation)

    monkeypatch.setattr(asteps.stores._claim_files.fcntl, "flock", flock)
    token = await store.create_claim("wf/steps/", "a", {"holder": "me"})
    assert token is not None  # not taken for held: nobody held it
    assert len(locks) == 2
    assert os.fstat(store._held[token][0]).st_ino == claim.stat().st_ino
    assert json.loads(claim.read_text()) == {"holder": "me"}
