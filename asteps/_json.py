"""JSON from outside the process, read within bounds.

A marker body comes from a store anyone with write access can fill: a body of
100,000 nested brackets makes ``json.loads`` raise ``RecursionError``, and one
of a gigabyte takes the memory. Both bounds are checked before parsing, so
that every body that cannot be decoded is one error, of one type, that says
which bound it broke; what asteps writes is checked against the same bounds,
so it never writes a body it would refuse to read.
"""

from __future__ import annotations

import re
from itertools import accumulate

MAX_DEPTH = 64
"""Arrays and objects nested deeper than this are refused (simpleflow's bodies
are flat; a kept result rarely nests more than a few levels)."""

MAX_RESULT_BYTES = 16 * 1024 * 1024
"""The largest ``max_result_bytes`` a runner accepts."""

MAX_BODY_BYTES = MAX_RESULT_BYTES + 64 * 1024
"""The largest marker body read: the largest result, and room for simpleflow's keys."""

# A JSON string, escapes included ("unrolled": no backtracking per character),
# or one never closed, which runs to the end of the text (a lone backslash
# there included). So a match that starts always succeeds, in one pass: a
# pattern that had to find the closing quote scanned to the end from every
# quote of a string never closed, quadratic in the body's size.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _open in b"[{":
    _STEP[_open] = 1
for _close in b"]}":
    _STEP[_close] = -1


class JsonBoundsError(ValueError):
    """JSON over a size or depth bound (the message says which)."""


def depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``raw``, without parsing it.

    Brackets inside strings do not count, nor those after a string that is
    never closed (a parser stops there). For text that is not JSON the count
    may be too high, never too low before the first error a parser would stop
    at. One pass over ``raw``, whatever it holds.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_bounds(raw: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> None:
    """Raise :class:`JsonBoundsError` when ``raw`` is over ``max_bytes`` or ``MAX_DEPTH``."""
    if len(raw) > max_bytes:
        raise JsonBoundsError(f"it is over {max_bytes:,} bytes")
    if (nested := depth(raw)) > MAX_DEPTH:
        raise JsonBoundsError(f"it nests {nested:,} levels deep, over {MAX_DEPTH}")
