"""FileStore: the embedded store. One file per done step at ``root/<prefix><name>``,
the same layout as S3 keys, so a tree can be synced to a bucket and back."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread

from .._names import is_valid_name
from ..errors import StoreError

_TMP = ".tmp-"  # never a valid step name, so never listed


class FileStore:
    """Markers as files under ``root``. Writes are atomic and durable: the
    content is fsynced before the rename, and the directory after it, so a
    marker exists only once it is complete and stays after a crash."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _split(self, prefix: str) -> tuple[Path, str]:
        directory, _, start = prefix.rpartition("/")
        return self.root / directory, start

    async def list_done(self, prefix: str) -> set[str]:
        return await anyio.to_thread.run_sync(self._list, prefix)

    def _list(self, prefix: str) -> set[str]:
        directory, start = self._split(prefix)
        try:
            entries = os.listdir(directory)
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise StoreError(
                f"cannot list {directory}: {exc.strerror}; check the store root exists "
                "and is readable",
                prefix=prefix,
            ) from exc
        cut = len(start)
        return {
            e[cut:]
            for e in entries
            if e.startswith(start) and is_valid_name(e[cut:]) and (directory / e).is_file()
        }

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        await anyio.to_thread.run_sync(self._write, prefix, name, json.dumps(dict(body)))

    def _write(self, prefix: str, name: str, content: str) -> None:
        directory, start = self._split(prefix)
        target = directory / (start + name)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP, dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(content)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_directory(directory)
        except OSError as exc:
            raise StoreError(
                f"cannot write marker {target}: {exc.strerror}; check the store root is "
                "writable and the disk is not full",
                prefix=prefix,
            ) from exc

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        await anyio.to_thread.run_sync(self._remove, prefix, list(names))

    def _remove(self, prefix: str, names: list[str]) -> None:
        directory, start = self._split(prefix)
        for name in names:
            try:
                (directory / (start + name)).unlink(missing_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot remove marker {name!r} under {directory}: {exc.strerror}",
                    prefix=prefix,
                ) from exc

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` survive a crash (POSIX; a no-op elsewhere)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
