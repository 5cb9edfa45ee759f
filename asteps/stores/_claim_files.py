"""Claim files: the claims of exclusive steps on the FileStore.

A claim is a file under ``root/.asteps-claims/`` locked with flock(2). The
kernel drops the lock when its holder dies, so a dead holder's claim is free
at once: no lease has to run out. Its token stays the same while it is held
(a live holder never looks stale), and renewing it writes nothing.

The lock is the claim only while the claim's path names the file locked (the
standard lock file check, on ``st_dev`` and ``st_ino``). A file removed or
replaced between a taker's open and its lock (a holder's release, a tmp
cleaner, an operator) is tried again on the path's new file; one removed or
replaced under its holder leaves the holder locking a file nobody else sees,
while another runner may create and lock a new one: the holder's next
renewal finds the claim lost (:func:`at_path`), and its release removes the
path only while it names the holder's own file.

A claim file is opened in place (its lock lives on that inode), so it is
never opened through a link: ``O_NOFOLLOW`` refuses a symbolic link at its
path, a hard link is refused by its link count, and ``O_NONBLOCK`` keeps a
FIFO planted there from making the open wait. The FileStore checks the
directories on the way (``FileStore._claim_path``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from ..errors import StoreError

CLAIM_OPEN = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
"""A claim is never opened through a symbolic link, nor waits on a FIFO
planted at its path (O_NONBLOCK does nothing to a regular file)."""

FILE_MODE = 0o666
"""As a marker's: the kernel takes the umask off."""

LOCK_TRIES = 8
"""Times a claim is tried when its file is removed or replaced between its
open and its lock; more, and it is taken for held (its taker looks again)."""


def cannot_create(path: Path, exc: OSError, prefix: str) -> StoreError:
    return StoreError(
        f"cannot create claim {path}: {exc.strerror}; check the store root is "
        "writable and the disk is not full",
        prefix=prefix,
    )


def open_claim(path: Path, flags: int, prefix: str) -> int:
    """``os.open`` of a claim file that refuses a link at ``path``, symbolic
    or hard (planted there, it would make a claim write wherever it points:
    a claim is written in place, not renamed over as a marker is)."""
    try:
        fd = os.open(path, flags | CLAIM_OPEN, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(
                f"claim {path} is a symbolic link: FileStore never follows a link at "
                "a claim's path (it would write wherever the link points); remove it",
                prefix=prefix,
            ) from exc
        raise
    found = os.fstat(fd)
    # No link count of 0 here: a holder may remove its claim between our
    # open and our look, which the caller tells apart by the inode.
    if not stat.S_ISREG(found.st_mode) or found.st_nlink > 1:
        os.close(fd)
        raise StoreError(
            f"claim {path} is not a plain file, or has other links (hard links: "
            f"{found.st_nlink}): FileStore never writes a claim through a link; remove it",
            prefix=prefix,
        )
    return fd


def lock(path: Path, prefix: str) -> int | None:
    """The claim file at ``path`` (its directory made) created if need be and
    locked: its open fd, or None when another holds it."""
    for _ in range(LOCK_TRIES):
        try:
            fd = open_claim(path, os.O_RDWR | os.O_CREAT, prefix)
        except OSError as exc:
            raise cannot_create(path, exc, prefix) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: held
            os.close(fd)
            return None
        try:
            # The lock is the claim only on the file at the path: the file
            # opened may have been removed (a holder's release, a tmp cleaner)
            # or replaced since, and a lock on it is seen by nobody.
            if at_path(fd, path):
                return fd
        except OSError as exc:
            os.close(fd)
            raise cannot_create(path, exc, prefix) from exc
        os.close(fd)  # and again, on the path's new file (or a fresh one)
    return None  # the path changes at every try: taken for held, looked at again later


def holder(path: Path, prefix: str) -> str | None:
    """The token of the claim at ``path`` as another runner sees it; None
    when nobody holds it (released, or its holder died)."""
    try:
        fd = open_claim(path, os.O_RDONLY, prefix)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read claim {path}: {exc.strerror}", prefix=prefix) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"held:{os.fstat(fd).st_ino}"
    else:
        return None
    finally:
        os.close(fd)  # drops the shared lock taken to look


def at_path(fd: int, path: Path) -> bool:
    """Whether ``path`` (never followed) names the file open on ``fd``; False
    once nothing is there. Other errors are raised."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def unlock(fd: int, path: Path, prefix: str) -> None:
    """Release the claim locked on ``fd``: remove its file, then drop the lock
    (a waiter that opened it sees another inode). The path is removed only
    while it names that file: once removed under its holder, the file there
    may be another runner's claim."""
    try:
        if at_path(fd, path):
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot release claim {path}: {exc.strerror}", prefix=prefix) from exc
    finally:
        os.close(fd)
