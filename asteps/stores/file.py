"""FileStore: the embedded store. One file per done step at ``root/<prefix><name>``,
the same layout as S3 keys, so a tree can be synced to a bucket and back."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import stat
import time
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import anyio.to_thread

from .._json import MAX_BODY_BYTES
from .._names import is_valid_name
from ..errors import StoreError, UnmarkError
from . import _claim_files as claim_files
from .base import CLAIMS_ROOT, BaseStore, body_json, parse_body
from .discovery import listing_order

TMP_PREFIX = ".tmp-"
"""Temporary files start with this: never a valid step name, so never listed."""

STALE_TMP_AGE = 3600.0
"""Seconds after which a temporary file is a crashed writer's leftover. No write
takes this long, so a file this old is never one still being written."""

# O_EXCL: a fresh file, never someone else's. Mode 0666: the kernel takes the
# umask off, as for any ordinary file (mkstemp's 0600 would hide markers from
# the other readers of a shared store).
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_FILE_MODE = 0o666

DISCOVERY_BATCH = 1000
"""Directory entries read per thread hop when listing workflows (as S3's page)."""


class FileStore(BaseStore):
    """Markers as files under ``root``.

    Writes are atomic and durable: the content is written to a temporary file
    and fsynced, renamed into place, and the directory fsynced; every directory
    created on the way is made durable too (its parent is fsynced). A marker
    exists only once it is complete, and stays after a crash or a power cut
    once ``mark_done`` returned. Marker files get the mode of any new file
    (0666 less the umask).

    A listing also removes the temporary files that crashed writers left in
    that directory, once they are older than ``STALE_TMP_AGE`` (an hour).

    Nothing is read or written outside ``root``: a workflow directory or a
    marker that resolves outside it (a symbolic link out of the root, a
    prefix or a marker name with ``..``) is refused with a ``StoreError``, a marker file that
    links out of the root is not listed, and discovery passes over
    directories that link out of it. The same holds for the claims of
    exclusive steps (under ``root/.asteps-claims/``): a directory on a claim's
    path that resolves outside the root is refused, and so is a symbolic link
    at the claim file's own path (never followed). The root itself may be a
    link.

    It needs no opening; ``async with`` and ``aclose()`` follow the rule of
    every store (see :class:`~asteps.stores.base.BaseStore`): once closed, it
    refuses every call.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = Path(root)
        # The claims this store holds: token -> the locked fd, and the path it was locked at.
        self._held: dict[str, tuple[int, Path]] = {}
        self._tokens = itertools.count(1)

    def _split(self, prefix: str) -> tuple[Path, str]:
        """The directory of ``prefix`` with every link resolved, and the start of
        its markers' names; ``StoreError`` when it is outside the root."""
        directory, _, start = prefix.rpartition("/")
        return self._inside(self.root / directory, prefix), start

    def _marker_path(self, prefix: str, name: str, split: tuple[Path, str] | None = None) -> Path:
        """Where marker ``prefix + name`` lives, checked as a prefix is: a name
        is any string here, and one with ``/`` and ``..`` may climb out of the
        root. ``split`` is ``self._split(prefix)`` when the caller has it."""
        if "/" in name:
            directory, leaf = self._split(prefix + name)
        else:
            directory, start = split or self._split(prefix)
            leaf = start + name
        if leaf in ("", ".", ".."):
            raise StoreError(
                f"marker name {name!r} under {prefix!r} ends in {leaf!r}, which names a "
                "directory, not a marker: FileStore never writes nor removes one",
                prefix=prefix,
            )
        return directory / leaf

    def _inside(self, path: Path, prefix: str) -> Path:
        """``path`` resolved (links followed), if it stays inside the root.

        Resolved once and then used as resolved: what is checked is what is
        opened (short of a link swapped in between, by someone who can already
        write in the root).
        """
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and not resolved.is_relative_to(root):
            raise StoreError(
                f"{path} resolves to {resolved}, outside the store root {root}: a symbolic "
                "link (or '..') leads out of the root, and FileStore never follows one "
                f"there; remove the link, or make {resolved.parent} the store root",
                prefix=prefix,
            )
        return resolved

    async def list_done(self, prefix: str) -> set[str]:
        self._check_usable()
        return await anyio.to_thread.run_sync(self._list, prefix)

    def _list(self, prefix: str) -> set[str]:
        directory, start = self._split(prefix)
        cut = len(start)
        names: set[str] = set()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    name = entry.name[cut:]
                    if entry.name.startswith(TMP_PREFIX):
                        # The listing reads the directory anyway: the cleanup costs
                        # nothing until a leftover is there.
                        _remove_if_stale(entry)
                    elif (
                        entry.name.startswith(start)
                        and is_valid_name(name)
                        and entry.is_file()
                        and (not entry.is_symlink() or _links_inside(entry, self.root))
                    ):
                        names.add(name)
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise StoreError(
                f"cannot list {directory}: {exc.strerror}; check the store root exists "
                "and is readable",
                prefix=prefix,
            ) from exc
        return names

    async def list_workflows(
        self, root: str = "", *, start_after: str | None = None
    ) -> AsyncGenerator[str, None]:
        """The names of the directories directly in ``root``, in S3's order (of
        ``name + "/"``), those after ``start_after`` only. Read
        ``DISCOVERY_BATCH`` entries at a time; the order asks for every name
        at once (about 70 bytes each while listing: a directory's own order
        would not let a batch go on after a name). Like the listing of
        markers, it asks the directory entry's type and never stats a file; a
        directory that holds no marker is listed too, and its own listing
        finds nothing."""
        self._check_usable()
        directory = await anyio.to_thread.run_sync(self._inside, self.root / root, root)
        try:
            entries = await anyio.to_thread.run_sync(os.scandir, directory)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(
                f"cannot list workflows in {directory}: {exc.strerror}; check the store root "
                "exists and is readable",
                prefix=root,
            ) from exc
        names: list[str] = []
        with entries:
            while True:
                try:
                    batch = await anyio.to_thread.run_sync(_directories, entries, self.root)
                except OSError as exc:
                    raise StoreError(
                        f"cannot list workflows in {directory}: {exc.strerror}", prefix=root
                    ) from exc
                if not batch:
                    break
                names.extend(batch)
        names.sort(key=listing_order)
        for name in names:
            if start_after is None or listing_order(name) > listing_order(start_after):
                yield name

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        self._check_usable()
        await anyio.to_thread.run_sync(self._write, prefix, name, body_json(body))

    def _write(self, prefix: str, name: str, content: bytes) -> None:
        target = self._marker_path(prefix, name)
        directory = target.parent
        try:
            _make_directories(directory)
            tmp = directory / f"{TMP_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(tmp, _CREATE, _FILE_MODE)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_directory(directory)
        except OSError as exc:
            raise StoreError(
                f"cannot write marker {target}: {exc.strerror}; check the store root is "
                "writable and the disk is not full",
                prefix=prefix,
            ) from exc

    async def read_marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        self._check_usable()
        return await anyio.to_thread.run_sync(self._read, prefix, name)

    def _read(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        path = self._marker_path(prefix, name)
        if path.is_symlink():
            path = self._inside(path, prefix)
        try:
            # O_NONBLOCK: a FIFO planted at the path must not make the open wait
            # (it does nothing to a regular file).
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read marker {path}: {exc.strerror}", prefix=prefix) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # no marker, as the listing says of anything but a file
            with open(fd, "rb", closefd=False) as f:
                raw = f.read(MAX_BODY_BYTES + 1)  # more is refused: no need to read it
        except OSError as exc:
            raise StoreError(f"cannot read marker {path}: {exc.strerror}", prefix=prefix) from exc
        finally:
            os.close(fd)
        return parse_body(raw, str(path))

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        self._check_usable()
        await anyio.to_thread.run_sync(self._remove, prefix, list(names))

    def _remove(self, prefix: str, names: list[str]) -> None:
        """Remove every marker it can, then name those it could not
        (:class:`~asteps.errors.UnmarkError`): one failure stops nothing."""
        split = self._split(prefix)
        wanted = list(dict.fromkeys(names))
        paths = [self._marker_path(prefix, name, split) for name in wanted]  # all checked first
        failed: dict[str, str] = {}  # name -> why it was not removed
        cause: OSError | None = None
        for name, path in zip(wanted, paths, strict=True):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                cause = cause or exc
                failed[name] = f"cannot remove under {path.parent}: {exc.strerror}"
        if failed:
            where = f"store {str(self.root)!r} under prefix {prefix!r}"
            raise UnmarkError.of(where, wanted, failed, prefix=prefix) from cause

    # -- claims of exclusive steps (see asteps.stores.base.HoldsClaims) ------------
    # Files under root/.asteps-claims/ locked with flock(2): see _claim_files.

    def _claim_path(self, prefix: str, name: str) -> Path:
        """Where the claim of ``prefix + name`` lives, its directories resolved.

        Each directory on the way is resolved and checked in turn, from the
        root down: a link anywhere on it (``.asteps-claims`` itself, or a
        workflow's directory) that leads out of the root is refused with a
        ``StoreError`` naming it, as for markers. The file itself is opened
        with ``CLAIM_OPEN``, which refuses a link there.
        """
        directories, _, file_name = (CLAIMS_ROOT + prefix + name).rpartition("/")
        directory = self.root.resolve()
        for part in directories.split("/"):
            directory = self._inside(directory / part, prefix)
        return directory / file_name

    async def create_claim(self, prefix: str, name: str, body: Mapping[str, Any]) -> str | None:
        self._check_usable()
        return await anyio.to_thread.run_sync(self._lock_claim, prefix, name, json.dumps(body))

    def _lock_claim(self, prefix: str, name: str, content: str) -> str | None:
        path = self._claim_path(prefix, name)
        try:
            _make_directories(path.parent)
        except OSError as exc:
            raise claim_files.cannot_create(path, exc, prefix) from exc
        fd = claim_files.lock(path, prefix)
        if fd is None:
            return None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, content.encode("utf-8"))
            token = f"{os.fstat(fd).st_ino}:{next(self._tokens)}"
        except OSError as exc:  # a full disk: the claim is not kept, its lock dropped
            os.close(fd)
            raise claim_files.cannot_create(path, exc, prefix) from exc
        self._held[token] = fd, path
        return token

    async def read_claim(self, prefix: str, name: str) -> str | None:
        self._check_usable()
        return await anyio.to_thread.run_sync(self._claim_holder, prefix, name)

    def _claim_holder(self, prefix: str, name: str) -> str | None:
        return claim_files.holder(self._claim_path(prefix, name), prefix)

    async def replace_claim(
        self, prefix: str, name: str, token: str, body: Mapping[str, Any]
    ) -> str | None:
        self._check_usable()
        held = self._held.get(token)
        if held is None:
            # Another's claim, seen unchanged for a lease: take it if its lock is free.
            return await self.create_claim(prefix, name, body)
        # Our own: the kernel keeps it ours, as long as its path names the file
        # locked; once it was removed or replaced, lost. Two metadata calls on a
        # local disk, made here, not in a thread: a renewal that awaits nothing
        # is not cut short when it comes late, so a holder resumed after a
        # pause (SIGSTOP) keeps the claim its lock kept.
        fd, path = held
        try:
            if claim_files.at_path(fd, path):
                return token
        except OSError as exc:
            raise StoreError(f"cannot renew claim {path}: {exc.strerror}", prefix=prefix) from exc
        del self._held[token]
        os.close(fd)  # a lock on a file nobody sees any more
        return None

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        self._check_usable()
        held = self._held.pop(token, None)
        if held is not None:
            fd, path = held
            await anyio.to_thread.run_sync(claim_files.unlock, fd, path, prefix)

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"


def _directories(entries: Iterator[os.DirEntry[str]], root: Path) -> list[str]:
    """The names of the directories among the next ``DISCOVERY_BATCH`` entries
    (an empty list once the entries are over); a link to a directory counts
    only if it stays inside ``root``."""
    names: list[str] = []
    while chunk := list(islice(entries, DISCOVERY_BATCH)):
        names.extend(
            e.name
            for e in chunk
            if e.is_dir()
            and not e.name.startswith(TMP_PREFIX)
            and (not e.is_symlink() or _links_inside(e, root))
        )
        if names:
            return names
    return names


def _links_inside(entry: os.DirEntry[str], root: Path) -> bool:
    """Whether the link ``entry`` resolves inside ``root`` (links are rare: the
    entries that are not links cost no system call)."""
    resolved_root = root.resolve()
    resolved = Path(entry.path).resolve()
    return resolved == resolved_root or resolved.is_relative_to(resolved_root)


def _make_directories(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each durably: a directory's
    entry lives in its parent, so the parent is fsynced after each creation."""
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)  # another writer may have just created it
        _fsync_directory(new.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a change of entries in ``directory`` survive a crash (POSIX; a no-op elsewhere)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_stale(entry: os.DirEntry[str]) -> None:
    """Remove a crashed writer's temporary file once it is older than STALE_TMP_AGE."""
    # Already gone (another lister) or a read-only store: it is never listed anyway.
    with contextlib.suppress(OSError):
        if time.time() - entry.stat().st_mtime > STALE_TMP_AGE:
            os.unlink(entry.path)
