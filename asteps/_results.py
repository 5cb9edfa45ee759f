"""Kept results: a step's result as JSON in its done marker's body, and back.

Why in the marker: the step is marked done and its result kept in one write,
so a marker never exists without its result (or the reverse), and a skipped
step reads one body to get it back. Values go through pydantic's
``TypeAdapter``: models, dataclasses, datetimes and the like become JSON, and
with a type (``keep_result=MyModel``) come back as that type. The body's JSON
is made once (``EncodedBody``): its size and depth are checked on the text
the store then writes, against the bounds it is read back with.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic.errors import PydanticUndefinedAnnotation, PydanticUserError

from ._json import MAX_DEPTH, MAX_RESULT_BYTES, JsonBoundsError, check_bounds
from ._names import shown
from .stores.base import EncodedBody

RESULT_KEY = "result"
"""The key of the kept result in a marker's body."""
DEFAULT_MAX_RESULT_BYTES = 256 * 1024


def _adapter(keep: Any) -> TypeAdapter[Any]:
    """The adapter of a ``keep_result`` type, built once per type.

    Building one costs about 20 µs, several times what a step costs, and a
    step that keeps its result used three (the check, the write and the read
    back). The types come from code, not input; the cache is bounded, and a
    type that cannot be hashed gets a fresh adapter each time.
    """
    try:
        return _cached_adapter(keep)
    except TypeError:  # unhashable (an Annotated with a list, say)
        return _build_adapter(keep)


def _build_adapter(keep: Any) -> TypeAdapter[Any]:
    return TypeAdapter(Any if keep is True else keep)


_cached_adapter = functools.lru_cache(maxsize=256, typed=True)(_build_adapter)


def check_keep(keep: Any) -> None:
    """``keep_result`` is False, True, or a type pydantic can validate.

    Raises ``TypeError`` otherwise. A string is refused though pydantic would
    take it as a forward reference: ``keep_result="yes"`` is a mistake, and
    ``"int"`` would resolve in asteps' namespace, not the caller's.
    """
    if keep is True or keep is False:
        return
    problem = "a string is not a type: give the type itself (int, not 'int')"
    if not isinstance(keep, str):
        try:
            _adapter(keep).rebuild(raise_errors=True)  # builds now, not at the first value
            return
        except (PydanticUserError, PydanticUndefinedAnnotation, TypeError) as exc:
            problem = str(exc).partition("\n")[0]
    raise TypeError(
        f"keep_result must be True or a type pydantic can validate (a model, a dataclass, "
        f"list[int], ...), got {shown(keep)}: {problem}"
    )


def check_max_result_bytes(value: object) -> int:
    """``max_result_bytes`` is a positive int up to ``MAX_RESULT_BYTES`` (16 MiB),
    since a larger body would be refused when read (checked before any step runs)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_result_bytes must be a positive int, got {shown(value)}")
    if value > MAX_RESULT_BYTES:
        raise ValueError(
            f"max_result_bytes must be at most {MAX_RESULT_BYTES:,} (a larger marker body "
            f"is refused when read), got {value:,}: store the data elsewhere and keep a "
            "reference to it"
        )
    return value


def _non_finite(value: Any) -> bool:
    """True when a float NaN or infinity sits anywhere in ``value`` (JSON has
    neither: pydantic would write them as null, and the value would be lost)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_non_finite(v) for v in value)
    return False


def result_body(fields: Mapping[str, Any], result: Any, keep: Any, max_bytes: int) -> EncodedBody:
    """The marker body ``fields`` with the result under ``RESULT_KEY``, its JSON
    made once: checked here, and written as is by the store.

    Raises ``ValueError`` with a message that says what to do when the result
    cannot be turned into JSON, does not validate against ``keep`` (a type),
    or makes a body deeper than ``MAX_DEPTH`` or over ``max_bytes``: what is
    written must read back as a valid result, or every later run would run
    the step again without a word. The bounds are those the body is read
    back with, checked on the very text the store writes.
    """
    adapter = _adapter(keep)
    if keep is not True:
        try:
            # Validated first: pydantic would otherwise only warn about a str
            # for an int, and write it.
            result = adapter.validate_python(result)
        except ValidationError as exc:
            raise ValueError(
                f"its result ({type(result).__name__}) is not of the type keep_result "
                f"declares ({_type_name(keep)}): {_first_problem(exc)}; return a value of that type"
            ) from exc
    try:
        if _non_finite(adapter.dump_python(result)):
            raise ValueError("it holds NaN or infinity, which JSON cannot hold")
        body = EncodedBody({**fields, RESULT_KEY: adapter.dump_python(result, mode="json")})
    except Exception as exc:  # pydantic and json raise several kinds
        raise ValueError(
            f"its result ({type(result).__name__}) cannot be written as JSON: {exc}; "
            "return JSON-able data, a pydantic model or a dataclass"
        ) from exc
    if len(body.raw) > max_bytes:
        raise ValueError(
            f"its result makes a marker body of {len(body.raw):,} bytes of JSON, over "
            f"max_result_bytes={max_bytes:,}: store the data elsewhere (an S3 object, a file) "
            "and return a reference to it"
        )
    try:
        check_bounds(body.raw, max_bytes=max_bytes)
    except JsonBoundsError as exc:
        raise ValueError(
            f"its result cannot be read back: in its marker body, {exc} (at most {MAX_DEPTH} "
            "levels of lists and objects, the body itself being one); flatten it"
        ) from exc
    if keep is not True:
        # The same check a later run makes on the body it reads.
        problem = decode_result(body, keep).problem
        if problem is not None:
            raise ValueError(
                f"its result, written as JSON, would not read back as {_type_name(keep)} "
                f"({problem}); return a value of the declared type"
            )
    return body


def _type_name(keep: Any) -> str:
    return keep.__name__ if isinstance(keep, type) else shown(keep)


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "value"
    return f"{where}: {first['msg']}"


@dataclass(frozen=True, slots=True)
class KeptResult:
    """What a marker body holds for a step that keeps its result."""

    value: Any = None
    problem: str | None = None
    """``"result missing"`` or ``"result invalid: <why>"``; None when the value is good."""


def decode_result(body: Mapping[str, Any] | None, keep: Any) -> KeptResult:
    """The kept result in ``body``, validated against ``keep`` when it is a type."""
    if body is None or RESULT_KEY not in body:
        return KeptResult(problem="result missing")
    raw = body[RESULT_KEY]
    if keep is True:
        return KeptResult(raw)
    try:
        return KeptResult(_adapter(keep).validate_python(raw))
    except ValidationError as exc:
        return KeptResult(problem=f"result invalid: {_first_problem(exc)}")
