"""The store protocol: where done markers live.

A store knows three things: list the step names done under a prefix, mark one
done, and remove some. The key of a marker is ``prefix + name`` and its body
is simpleflow's JSON ``{"run_id", "workflow_id", "version"}`` (plus
``"result"`` for a step that keeps its result). A body is read only for steps
that keep a result or rerun on a new version (``read_marker``). Every store
is also an async context manager with ``aclose()``, and lists alike: only
valid names directly under the prefix.

:class:`DoneStore` is what a store must provide; :class:`BaseStore` gives
the lifecycle (``async with``, ``aclose()``, refusing a closed store) to
any store that subclasses it, as the three stores asteps ships do, so that
each of them holds only its own operations. Optional capabilities are
protocols checked with ``isinstance``: :class:`ReadsMarkers`,
:class:`HoldsClaims`, :class:`ChecksPrefixes`.

The helpers here (``list_done_many``, ``matching``, ``unmark_matching``) serve
every store through those three methods; no store needs a faster path of its
own, since each listing or removal is already one request per page or batch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar, NoReturn, Protocol, Self, runtime_checkable

import anyio

from .._json import JsonBoundsError, check_bounds
from .._lifecycle import Resource, State
from ..errors import MarkerBodyError


@runtime_checkable
class DoneStore(Protocol):
    """Where done markers are kept. Implementations: MemoryStore, FileStore, S3Store.

    Every store is an async context manager with ``aclose()``, so any store can
    be used the same way: ``async with store: ...``.
    """

    async def list_done(self, prefix: str) -> set[str]:
        """The valid step names directly under ``prefix`` (the prefix stripped)."""
        ...

    async def mark_done(self, prefix: str, name: str, body: Mapping[str, Any]) -> None:
        """Record ``name`` as done under ``prefix``; returns once it is durable."""
        ...

    async def unmark(self, prefix: str, names: Iterable[str]) -> None:
        """Remove the markers of exactly these names; absent ones are ignored."""
        ...

    async def __aenter__(self) -> Self:
        """Open the store (acquire what it holds); returns the store."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store: ``await self.aclose()``."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds. Idempotent."""
        ...


def check_store(store: object) -> None:
    """Refuse what cannot be a runner's store, saying what to pass instead:
    a class, a store URL, or an object without ``list_done`` and ``mark_done``
    (the two methods a runner calls)."""
    if isinstance(store, type):
        raise TypeError(
            f"store must be a store object, got the class {store.__name__}: "
            f"call it, e.g. {store.__name__}(...)"
        )
    if isinstance(store, str):
        raise TypeError(
            f"store must be a store object, got the string {store!r}: for a store URL, "
            "open it with asteps.open_store (async with open_store(url) as store: ...)"
        )
    if not all(callable(getattr(store, method, None)) for method in ("list_done", "mark_done")):
        raise TypeError(
            "store must be a DoneStore (MemoryStore, FileStore, S3Store, or an object "
            f"with async list_done and mark_done), got {store!r}"
        )


@runtime_checkable
class ReadsMarkers(Protocol):
    """A store that can read a marker's body, as every store asteps ships can.

    Only steps with ``keep_result`` or ``rerun_on_new_version`` read bodies; a
    store of your own without ``read_marker`` serves every other step.

    Optional capabilities are checked one way: ``isinstance(store,
    ReadsMarkers)``, ``isinstance(store, HoldsClaims)``, ``isinstance(store,
    ChecksPrefixes)``.
    """

    async def read_marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        """The body of marker ``name`` under ``prefix``; None when there is no marker.

        Raises :class:`~asteps.errors.MarkerBodyError` when the body is not a
        JSON object.
        """
        ...


@runtime_checkable
class ChecksPrefixes(Protocol):
    """A store that refuses some prefixes, as S3Store refuses one that leaves
    no room in S3's 1,024-byte keys. A runner calls :meth:`check_prefix` once,
    when it is built, so that such a prefix is refused before any step runs,
    even when the runner is given its done set (``done=``) and never lists
    the store. Nothing is checked per step."""

    def check_prefix(self, prefix: str) -> None:
        """Raise :class:`~asteps.errors.InvalidPrefix` when the store cannot
        hold markers (or claims) under ``prefix``; no I/O."""
        ...


CLAIMS_ROOT = ".asteps-claims/"
"""Where a store keeps the claims of exclusive steps: the claim of marker
``<prefix><name>`` is ``.asteps-claims/<prefix><name>``, under the store's own
root. No listing of a workflow's markers (asteps' or simpleflow's, both under
``<workflow_id>/...``) can return it, and no workflow id starts with ``.``."""


@runtime_checkable
class HoldsClaims(ReadsMarkers, Protocol):
    """A store that can hold the claims of exclusive steps (``exclusive=True``),
    as MemoryStore, FileStore and S3Store can. Exclusive steps read markers
    too, so a store that holds claims also has ``read_marker``: one
    ``isinstance(store, HoldsClaims)`` checks all an exclusive step needs.

    A claim is an object beside the store's markers with a *token* that changes
    at every write (S3's ETag). The algorithm that uses these primitives
    (take, renew, release, wait, take over a stale claim) is in
    ``asteps._claims``; a store only supplies them.
    """

    async def create_claim(self, prefix: str, name: str, body: Mapping[str, Any]) -> str | None:
        """Create the claim if there is none; its token, or None when it is held."""
        ...

    async def read_claim(self, prefix: str, name: str) -> str | None:
        """The claim's token; None when there is no live claim."""
        ...

    async def replace_claim(
        self, prefix: str, name: str, token: str, body: Mapping[str, Any]
    ) -> str | None:
        """Rewrite the claim if its token is still ``token`` (compare-and-swap):
        its new token, or None when it changed or is gone."""
        ...

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        """Remove the claim if its token is still ``token``; otherwise do nothing."""
        ...


def parse_body(raw: bytes | str, where: str) -> Mapping[str, Any]:
    """A marker body as written by asteps or simpleflow: a JSON object.

    Raises :class:`~asteps.errors.MarkerBodyError` for any body that cannot be
    decoded: not JSON, not an object, over ``MAX_BODY_BYTES`` or nested deeper
    than ``MAX_DEPTH`` (checked before parsing: see ``asteps._json``). A store
    reads at most ``MAX_BODY_BYTES + 1`` bytes of a body.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        check_bounds(data)
        body = json.loads(data, parse_constant=_not_json)
    except JsonBoundsError as exc:
        raise MarkerBodyError(f"marker {where} is refused: {exc}") from None
    except ValueError as exc:
        raise MarkerBodyError(f"marker {where} is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise MarkerBodyError(f"marker {where} holds a {type(body).__name__}, not a JSON object")
    return body


def _not_json(constant: str) -> NoReturn:
    """``NaN``, ``Infinity`` and ``-Infinity``: Python's json reads them, but
    they are not JSON, and asteps never writes them (a kept result is refused
    with one): a body that holds one did not come from asteps or simpleflow."""
    raise ValueError(f"{constant} is not a JSON value")


class EncodedBody(dict[str, Any]):
    """A marker body and its JSON (``raw``), made once when the body is built.

    The runner builds one for a step that keeps its result: it checks the
    size and depth of ``raw``, the text that will be read back, and the store
    writes that same text (:func:`body_json`), so the result is serialised
    once. It is a dict, so a store of your own can treat it as any body; do
    not change it, or ``raw`` no longer says what it holds.
    """

    __slots__ = ("raw",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self.raw = _encode(self)


def body_json(body: Mapping[str, Any]) -> bytes:
    """The JSON a store writes for a marker body: the text an :class:`EncodedBody`
    carries, or the body encoded now (simpleflow's layout either way)."""
    return body.raw if isinstance(body, EncodedBody) else _encode(body)


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(body)).encode("utf-8")


class BaseStore(Resource):
    """The lifecycle every store shares, so that a store writes only its own
    operations (as httpx's ``AsyncBaseTransport`` gives every transport its
    ``__aenter__``/``__aexit__``).

    The rule, the same for every store so that code tested on a local store
    behaves the same on S3: ``async with`` opens the store once (a second open,
    or one after closing, raises ``RuntimeError`` with a sentence that says
    so); leaving the block, or :meth:`aclose`, closes it once, never cut short
    by a cancellation; a closed store refuses every call. That lifecycle is
    every resource's (:class:`asteps._lifecycle.Resource`).

    A store that holds a resource (S3Store's client) overrides :meth:`_open`
    and :meth:`_close` and sets ``needs_opening``: it refuses calls until it
    is opened. One that holds nothing (MemoryStore, FileStore) can be used as
    soon as it is built. Each operation starts with :meth:`_check_usable`.

    Subclassing is a convenience: a store of your own only has to provide what
    :class:`DoneStore` lists.
    """

    needs_opening: ClassVar[bool] = False
    """Whether calls are refused until the store is opened (``async with``)."""

    def __init__(self) -> None:
        super().__init__(f"this {type(self).__name__}")

    async def _acquire(self) -> None:
        await self._open()

    async def _release(self, exc: BaseException | None) -> None:
        with anyio.CancelScope(shield=True):  # a cancelled caller still releases
            await self._close()

    async def _open(self) -> None:
        """Acquire what the store holds (override; nothing by default)."""

    async def _close(self) -> None:
        """Release what :meth:`_open` acquired, even when it failed midway
        (override; nothing by default). Called once."""

    def _check_usable(self) -> None:
        """Refuse a call on a closed store (or an unopened one that needs opening)."""
        if self.needs_opening or self._lifecycle.state is State.CLOSED:
            self._lifecycle.check_open()


def __getattr__(name: str) -> Any:
    # HoldsNothing was BaseStore's name while it served only the stores that hold nothing.
    if name == "HoldsNothing":
        warnings.warn(
            "asteps.stores.base.HoldsNothing is now BaseStore", DeprecationWarning, stacklevel=2
        )
        return BaseStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
