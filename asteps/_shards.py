"""Shards of a batch: ``--shard K/N`` for ``asteps rerun`` and ``asteps swf submit``.

An id belongs to shard ``sha256(id as UTF-8)[:8] as a big-endian integer
modulo N``: a stable hash, the same on every machine, Python version and run
(Python's ``hash()`` of a string changes from process to process). K is
0-based, as Kubernetes' ``JOB_COMPLETION_INDEX`` and AWS Batch's
``AWS_BATCH_JOB_ARRAY_INDEX`` are, so ``--shard $JOB_COMPLETION_INDEX/N``
needs no arithmetic. The N shards of any list of ids hold each id exactly
once, whatever the source (an ids file, the store's listing, ``--missing``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_SHARDS = 100_000
"""The most shards a batch is split into (Kubernetes' largest Indexed Job)."""

_SHAPE = re.compile(r"([0-9]{1,6})/([0-9]{1,6})")


def shard_of(workflow_id: str, count: int) -> int:
    """The shard (0 to ``count - 1``) that ``workflow_id`` belongs to.

    An undecodable line of an ids file (kept as surrogate escapes) hashes by
    its bytes, so it too is reported by exactly one shard.
    """
    data = workflow_id.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be 1 to {MAX_SHARDS:,}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index} of {self.count} does not exist: shards are numbered "
                f"from 0 to {self.count - 1}"
            )

    def holds(self, workflow_id: str) -> bool:
        """Whether ``workflow_id`` is in this shard."""
        return self.count == 1 or shard_of(workflow_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` as a :class:`Shard`; ``ValueError`` saying what is wrong."""
    match = _SHAPE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text[:40]!r} is not K/N (K the 0-based shard, N the number of shards, e.g. 0/4)"
        )
    return Shard(int(match[1]), int(match[2]))
