"""Step names and patterns: what is valid, and which pattern covers which name.

A name is dot-separated segments of letters, digits, ``_`` or ``-``. A pattern
is ``*`` or a name; pattern ``a`` covers ``a`` and ``a.b.c`` but not ``ab``.
These rules are shared by steps, forced/skipped patterns and bus subscriptions.
"""

from __future__ import annotations

import itertools
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidPrefix, InvalidStepName, InvalidWorkflowId

DEFAULT_PREFIX = "{workflow_id}/steps/"
"""Where a workflow's markers live unless told otherwise: one directory per workflow."""

WILDCARD = "*"
MAX_NAME_LENGTH = 200
MAX_WORKFLOW_ID_BYTES = 255
"""One file name on common file systems; SWF's workflowId allows 256 characters."""
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate (an undecodable byte)",
}

_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a valid step name."""
    return (
        isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None
    )


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid step name, else raise :class:`InvalidStepName`."""
    if is_valid_name(name):
        return name  # type: ignore[return-value]
    if name == WILDCARD:
        raise InvalidStepName(
            "'*' is a pattern, not a step name: give the step a name such as 'export.csv'"
        )
    raise InvalidStepName(_explain(name, "step name"))


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is ``*`` or a valid name, else raise :class:`InvalidStepName`."""
    if pattern == WILDCARD or is_valid_name(pattern):
        return pattern  # type: ignore[return-value]
    raise InvalidStepName(_explain(pattern, "pattern") + "; a pattern may also be '*'")


def validate_patterns(patterns: str | Iterable[str]) -> list[str]:
    """Accept one pattern or an iterable of patterns; validate them all first."""
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    return [validate_pattern(p) for p in items]


def covers(pattern: str, name: str) -> bool:
    """True iff ``pattern`` is ``*``, equals ``name``, or is a dotted ancestor of it."""
    if pattern in (WILDCARD, name):
        return True
    return name.startswith(pattern) and name[len(pattern) : len(pattern) + 1] == "."


def unprintable(text: str) -> str | None:
    """The first character of ``text`` that no table or log could show as it
    is (Unicode categories Cc, Cf, Zl, Zp, lone surrogates), described, as in
    "a control character, U+000A"; None when there is none."""
    for char in text:
        what = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if what is not None:
            return f"{what}, U+{ord(char):04X}"
    return None


def validate_workflow_id(workflow_id: object) -> str:
    """Refuse workflow ids that would escape or corrupt a store's key layout, or
    that a terminal, a file system or S3 would show or store differently: ``/``,
    a leading ``.``, Unicode categories Cc, Cf, Zl, Zp and lone surrogates, a
    space other than the plain one (Zs) or one at either end, and more than
    255 bytes of UTF-8."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise InvalidWorkflowId(f"workflow id must be a non-empty string, got {workflow_id!r}")
    if "/" in workflow_id:
        # Only separators every command takes: SWF's workflowId refuses ':' and '|'.
        raise InvalidWorkflowId(
            f"workflow id {shown(workflow_id)} contains '/': it would change the marker "
            "layout; use another separator such as '-' or '_'"
        )
    if workflow_id != workflow_id.strip(" "):
        # "c1 " and "c1" would be two workflows shown the same in every table.
        raise InvalidWorkflowId(
            f"workflow id {workflow_id!r} begins or ends with a space: remove it"
        )
    for char in workflow_id:
        category = unicodedata.category(char)
        what = _REFUSED_CATEGORIES.get(category)
        if what is not None:
            raise InvalidWorkflowId(
                f"workflow id {shown(workflow_id)} contains {what}, U+{ord(char):04X}: "
                "ids must be printable text"
            )
        if category == "Zs" and char != " ":
            # A no-break space looks like a space: "cust-1" and "cust-1\xa0"
            # would be two workflows shown the same in every table.
            raise InvalidWorkflowId(
                f"workflow id {shown(workflow_id)} contains a space other than the plain "
                f"one, U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')}): write a "
                "plain space, or none"
            )
    size = len(workflow_id.encode("utf-8"))
    if size > MAX_WORKFLOW_ID_BYTES:
        raise InvalidWorkflowId(
            f"workflow id {workflow_id[:40]!r}... is {size} bytes of UTF-8; the limit is "
            f"{MAX_WORKFLOW_ID_BYTES} (one file name on common file systems)"
        )
    if workflow_id in (".", ".."):
        raise InvalidWorkflowId(f"workflow id {workflow_id!r} is a path component, not an id")
    if workflow_id.startswith("."):
        # A leading dot hides a directory, and the file store's temporary files
        # start with '.tmp-': such a workflow would never see its own markers.
        raise InvalidWorkflowId(
            f"workflow id {workflow_id!r} starts with '.': start it with a letter or digit"
        )
    return workflow_id


MAX_KEY_BYTES = 1024
"""S3's limit on an object key: a prefix leaves room for the longest step name.
S3Store counts its key root and the claims area too, when it lists a prefix
(before a runner's first step runs)."""
MAX_SEGMENT_BYTES = 255
"""One file name on common file systems: each ``/``-separated part of a key."""
MAX_SHOWN = 80
"""Input quoted in an error message is cut to this many characters."""


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr(value)``, cut to about ``limit`` characters: error messages quote
    input, and input may be a megabyte long."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters in all)"


def validate_prefix_template(template: object, context: Mapping[str, Any] | None = None) -> str:
    """Return ``template`` if it is a prefix template asteps can format safely,
    else raise :class:`InvalidPrefix`.

    A template holds text and fields, and a field is ``{workflow_id}`` or the
    plain name of a key of ``context``: no conversion (``!r``), no format spec
    (``:>300``: a width would let the template allocate without bound), no
    attribute or index (``.x``, ``[0]``).
    """
    if not isinstance(template, str):
        raise InvalidPrefix(f"prefix template must be a string, got {type(template).__name__}")
    if len(template.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidPrefix(
            f"prefix template {shown(template)} is longer than S3's {MAX_KEY_BYTES}-byte key"
        )
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidPrefix(f"prefix template {shown(template)} is malformed: {exc}") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if conversion is not None or spec:
            raise InvalidPrefix(
                f"prefix template {shown(template)} formats {{{shown(field, 40)[1:-1]}}} with "
                f"{'a conversion' if conversion is not None else 'a format spec'}: write the "
                "field alone, as in '{workflow_id}/steps/'"
            )
        if not field.isidentifier():
            raise InvalidPrefix(
                f"prefix template {shown(template)} has the field {{{shown(field, 40)[1:-1]}}}: "
                "a field is {workflow_id} or the name of a context key, without '.', '[' "
                "or a position"
            )
        if field != "workflow_id" and field not in (context or {}):
            raise InvalidPrefix(
                f"prefix template {shown(template)} uses {{{field}}} but it is not in the "
                "runner's context: pass context={...} with that key"
            )
    return template


def format_prefix(template: str, workflow_id: str, context: Mapping[str, Any] | None) -> str:
    """Format a prefix template (simpleflow's ``get_step_path_prefix``).

    The template sees ``workflow_id`` and every key of ``context`` (see
    :func:`validate_prefix_template`). The prefix must be relative, without
    ``..`` or control characters, not start with ``.``, have no empty or ``.``
    segment, leave room in S3's 1,024-byte key for a step name of
    ``MAX_NAME_LENGTH``, and keep each segment within 255 bytes.

    A prefix is a directory, as simpleflow's ``os.path.join(prefix, name)``
    makes it: one without a trailing ``/`` is given one (``people/42/steps``
    holds ``people/42/steps/<name>``); an empty one stays empty.
    """
    validate_prefix_template(template, context)
    values = dict(context or {})
    values["workflow_id"] = workflow_id
    prefix = template.format(**values)
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # simpleflow joins a prefix and a name with os.path.join
    if prefix.startswith("/") or _CONTROL.search(prefix) or ".." in prefix.split("/"):
        raise InvalidPrefix(
            f"prefix {shown(prefix)} must be relative, without '..' segments or control characters"
        )
    if prefix.startswith("."):
        # A store keeps its own objects under a leading '.': the claims of
        # exclusive steps (CLAIMS_ROOT), the file store's temporary files.
        raise InvalidPrefix(
            f"prefix {shown(prefix)} starts with '.', where stores keep their own files "
            "(claims of exclusive steps under '.asteps-claims/'): start it with a letter, "
            "a digit or {workflow_id}"
        )
    if any(segment in ("", ".") for segment in prefix.split("/")[:-1]):
        # S3 keeps "a//b/" and "a/./b/" as written, a file tree reads "a/b/".
        raise InvalidPrefix(
            f"prefix {shown(prefix)} has an empty or '.' segment, which S3 keeps and a "
            "file store drops: write each segment once, between single '/'"
        )
    size = len(prefix.encode("utf-8", "surrogatepass"))
    if size + MAX_NAME_LENGTH > MAX_KEY_BYTES:
        raise InvalidPrefix(
            f"prefix {shown(prefix)} is {size} bytes: with a step name of up to "
            f"{MAX_NAME_LENGTH} characters, a key would pass S3's {MAX_KEY_BYTES}-byte limit"
        )
    for segment in prefix.split("/"):
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise InvalidPrefix(
                f"prefix {shown(prefix)} has a segment {shown(segment)} over "
                f"{MAX_SEGMENT_BYTES} bytes, the longest file name on common file systems"
            )
    return prefix


def check_prefix_per_workflow(template: str, context: Mapping[str, Any] | None = None) -> str:
    """Refuse a template that does not give each workflow its own prefix, for
    runs of many workflows: it must hold the whole id followed by ``/``
    (``{workflow_id}/``). Since ids hold no ``/``, no workflow's prefix then
    starts with another's. Without it, workflows share markers (``steps/``).
    The rule is read on the template as written: ``steps/{workflow_id}``, which
    formats to ``steps/w1/``, is refused all the same, so that a batch's
    template says where each workflow's directory ends."""
    format_prefix(template, "check", context)  # malformed or unknown keys first
    parts = string.Formatter().parse(template)
    for (_, field, _, _), (following, *_) in itertools.pairwise(parts):
        if field == "workflow_id" and following[:1] == "/":
            return template
    raise InvalidPrefix(
        f"prefix template {shown(template)} does not hold {{workflow_id}}/ (the whole id, "
        "then '/'), as the default '{workflow_id}/steps/' does: without it, workflows "
        "of one batch would share or overlap their markers"
    )


def _explain(value: object, what: str) -> str:
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not value:
        return f"{what} is empty"
    if len(value) > MAX_NAME_LENGTH:
        return (
            f"{what} {value[:40]!r}... is {len(value)} characters; the limit is {MAX_NAME_LENGTH}"
        )
    if "" in value.split("."):
        return f"{what} {value!r} has an empty segment: remove the stray '.'"
    bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "._-"))})
    return (
        f"{what} {value!r} contains {''.join(bad)!r}: use dot-separated segments of "
        "letters, digits, '_' or '-'"
    )
