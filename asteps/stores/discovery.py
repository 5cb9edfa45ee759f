"""Workflow ids from the store itself: a delimited listing of its root.

Why a delimited listing: with the prefix template ``{workflow_id}/...``, every
workflow's markers live under a "directory" named by its id at the root of
the store, so listing the root with ``Delimiter="/"`` gives each id once,
1,000 ids per S3 request, without reading a single marker. A template that
puts something before ``{workflow_id}/`` (or puts ``{workflow_id}`` elsewhere)
has no such directory, and is refused.

The listing is in S3's order (of ``name + "/"``, by code point, which is the
order of UTF-8 bytes), so that a stopped batch can go on after the last
workflow it listed (``start_after``: S3's ``StartAfter``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Protocol, runtime_checkable

from .._names import shown, validate_workflow_id
from ..errors import InvalidName, InvalidPrefix, StoreError

WORKFLOW_DIRECTORY = "{workflow_id}/"


@runtime_checkable
class ListsWorkflows(Protocol):
    """A store that can list the workflow "directories" at its root, as every
    store asteps ships can (MemoryStore, FileStore, S3Store)."""

    def list_workflows(
        self, root: str = "", *, start_after: str | None = None
    ) -> AsyncGenerator[str, None]:
        """The names directly under ``root`` that have keys below them, in
        :func:`listing_order`, those after ``start_after`` only, streamed (S3:
        ListObjectsV2 with ``Delimiter="/"``, page by page)."""
        ...


def listing_order(name: str) -> str:
    """The key a workflow's name sorts by in a listing: ``name + "/"``, as S3
    orders common prefixes ("a-b" before "a", since "-" comes before "/")."""
    return name + "/"


def check_discoverable(template: str) -> None:
    """Refuse a prefix template under which workflows cannot be discovered.

    Raises :class:`~asteps.errors.InvalidPrefix` (a ``ValueError``) unless the
    template starts with ``{workflow_id}/``, as the default ``{workflow_id}/steps/``.
    """
    if not template.startswith(WORKFLOW_DIRECTORY):
        raise InvalidPrefix(
            f"cannot discover workflows with the prefix template {template!r}: discovery "
            f"lists the store's root, so the template must start with {WORKFLOW_DIRECTORY!r} "
            "(as the default '{workflow_id}/steps/'); give the ids with --ids instead"
        )


def discover_workflows(
    store: object, template: str, *, start_after: str | None = None
) -> AsyncGenerator[str, None]:
    """Every workflow id that has a "directory" at the root of ``store`` (after
    ``start_after`` only, when given), streamed one listing page at a time.

    Names that cannot be workflow ids (a ``/``, control characters, ``.``)
    are passed over: asteps never wrote them, and the FileStore passes over
    directories that link out of its root. Raises ``InvalidName`` for a
    template :func:`check_discoverable` refuses and ``StoreError`` for a store
    without ``list_workflows``, both when called, before any I/O (not at the
    first ``anext``: a plain function that returns the async generator).
    """
    check_discoverable(template)
    if not isinstance(store, ListsWorkflows):
        raise StoreError(
            f"{shown(store)} cannot list workflows (it has no list_workflows(root)): give "
            "the ids with --ids, or use MemoryStore, FileStore or S3Store"
        )
    if start_after is not None:
        validate_workflow_id(start_after)
    return _discovered(store, start_after)


async def _discovered(store: ListsWorkflows, start_after: str | None) -> AsyncGenerator[str, None]:
    listing = (
        store.list_workflows("")
        if start_after is None
        else store.list_workflows("", start_after=start_after)
    )
    async with aclosing(listing) as names:
        async for name in names:
            try:
                validate_workflow_id(name)
            except InvalidName:
                continue
            yield name
