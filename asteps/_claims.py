"""Exclusive steps: run once across runners, processes and machines.

A runner that runs an exclusive step first *claims* it: it creates a claim
object beside the store's markers, and only the runner whose create succeeded
runs the step. Each store supplies four primitives (``HoldsClaims`` in
``asteps.stores.base``): create if absent, read the token, compare-and-swap,
and delete if the token matches. This module is the algorithm built on them.

- **Take.** Create the claim. Having won, read the step's marker once more (it
  may have been marked since the listing): if it is there, release and skip.
  A forced step reads the marker before it tries the claim instead, and is
  skipped only for a marker with another run id (written by a holder since).
- **Renew** every ``lease / 3`` with compare-and-swap. A refused renewal means
  another runner took the claim over: the step's activities are cancelled and
  the step is not marked (``ClaimLost``). One that failed (a store error) is
  retried after ``lease / 12``, while the claim is still safe.
- **Never mark late.** The marker is written only while the lease certainly
  holds: within ``lease`` of the moment the last successful write was *sent*,
  less a margin of ``lease / 3``; otherwise the claim is renewed first.
- **Release** with a conditional delete, after the marker is written and on
  failure or cancellation too (shielded).
- **Wait.** A runner that finds the claim held polls, with back-off, for the
  marker (then it skips the step: done by the claim's holder) or for the claim
  to go stale. Stale means its token has not changed for a full lease
  *measured on the waiter's own clock*: no clocks are compared between
  machines. Then the waiter takes it over with compare-and-swap on the stale
  token, and exactly one waiter wins.

What this cannot guarantee (nor can any lease without a fencing token on the
marker write, which S3 does not have): a holder paused for longer than its
lease between its last check and its marker write (a stop-the-world pause, a
suspended VM) may still write its marker after another took over. The margin
makes that window a pause of more than ``lease / 3`` in the middle of one
request.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from .errors import ClaimLost, MarkerBodyError
from .stores.base import HoldsClaims, ReadsMarkers

logger = logging.getLogger("asteps")

DEFAULT_LEASE = 60.0
MIN_LEASE = 0.05
FIRST_POLL = 0.05
"""Seconds a waiter first waits before it looks again; doubled up to
``lease / 4`` (and at most ``MAX_POLL``)."""
MAX_POLL = 5.0


def check_lease(lease: object) -> float:
    """``lease`` is a finite number of seconds, at least ``MIN_LEASE``."""
    if (
        isinstance(lease, bool)
        or not isinstance(lease, int | float)
        or not lease >= MIN_LEASE
        or lease == float("inf")
    ):
        raise ValueError(f"lease must be a finite number of seconds >= {MIN_LEASE}, got {lease!r}")
    return float(lease)


@dataclass
class Claims:
    """How a runner claims its exclusive steps: the store, the lease, and the
    clock and sleep it measures them with (injectable, for tests)."""

    store: HoldsClaims
    lease: float
    run_id: str
    workflow_id: str
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep

    def body(self, name: str, renewals: int) -> dict[str, Any]:
        """What a claim says of its holder (a renewal changes it, and so its token)."""
        return {
            "step": name,
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "lease": self.lease,
            "renewals": renewals,
            "written_at": datetime.now(UTC).isoformat(),
        }

    async def take(self, prefix: str, name: str, *, forced: bool) -> Held | Mapping[str, Any]:
        """Claim step ``name``: a :class:`Held` claim to run it under, or the
        body of the marker another runner wrote while this one waited (skip)."""
        store = self.store
        # A forced step runs although it may be done: it is skipped only for a
        # marker written after this moment, so the run id to compare with is
        # read before the claim is tried (read after a refusal, it would miss
        # a holder that marked in between).
        before: object = None  # the run id of the marker this forced step reruns
        if forced:
            try:
                marker = await self._marker(prefix, name)
            except MarkerBodyError:  # a broken marker, which forcing the step rewrites
                before = _UNREADABLE
            else:
                before = None if marker is None else marker.get("run_id")
        sent = self.clock()
        token = await store.create_claim(prefix, name, self.body(name, 0))
        waited = False
        seen: str | None = None
        seen_at = 0.0
        pause = FIRST_POLL
        while token is None:
            if not waited:
                logger.debug("step %s: claim held, waiting", name)
            waited = True
            marker = await self._written_since(prefix, name, forced, before)
            if marker is not None:
                return marker
            current = await store.read_claim(prefix, name)
            now = self.clock()
            if current is None:  # released, or its holder died (a file's lock)
                sent = now
                token = await store.create_claim(prefix, name, self.body(name, 0))
                continue
            if current != seen:
                seen, seen_at = current, now
            elif now - seen_at >= self.lease:  # unchanged for a lease: stale
                sent = now
                token = await store.replace_claim(prefix, name, current, self.body(name, 0))
                if token is not None:
                    logger.warning(
                        "step %s: took over a claim unchanged for %.1f s", name, now - seen_at
                    )
                    continue
            await self.sleep(pause)
            pause = min(pause * 2, self.lease / 4, MAX_POLL)
        held = Held(self, prefix, name, token, sent)
        if not forced or waited:
            try:
                marker = await self._written_since(prefix, name, forced, before)
            except BaseException:  # cancelled, or the read failed: the claim is not kept
                await held.release()
                raise
            if marker is not None:
                await held.release()
                return marker
        return held

    async def _written_since(
        self, prefix: str, name: str, forced: bool, before: object
    ) -> Mapping[str, Any] | None:
        """The step's marker if it was written since this runner decided to
        run the step (any marker for an unforced step; for a forced one, one
        with another run id than ``before``). A broken marker raises
        :class:`MarkerBodyError`, unless it is the one a forced step reruns."""
        try:
            marker = await self._marker(prefix, name)
        except MarkerBodyError:
            if forced and before is _UNREADABLE:
                return None  # the broken marker it found, which it rewrites
            raise
        if marker is not None and (not forced or marker.get("run_id") != before):
            return marker
        return None

    async def _marker(self, prefix: str, name: str) -> Mapping[str, Any] | None:
        assert isinstance(self.store, ReadsMarkers)  # checked when the runner was built
        return await self.store.read_marker(prefix, name)


_UNREADABLE = object()
"""The run id of a marker whose body cannot be read: equal to none."""


@dataclass
class Held:
    """A claim this runner holds: renewed while the step runs, released after."""

    claims: Claims
    prefix: str
    name: str
    token: str
    sent: float
    """When the last successful write of the claim was sent (this runner's clock)."""
    renewals: int = 0
    lost: str | None = None
    """Why the claim was lost, once it is."""
    _failed: str | None = field(default=None, repr=False)
    """The store error of the last renewal, if it failed (the claim still safe)."""
    _deletable: bool = field(default=True, repr=False)
    """Whether :meth:`release` tries to delete the claim: not once another
    runner took it over (nothing of ours is left), nor once the store did not
    answer (a partition: the release would wait for it too)."""
    _released: bool = field(default=False, repr=False)

    @property
    def safe_until(self) -> float:
        """Until when (this runner's clock) no other runner can have taken the
        claim over, with a margin of a third of the lease: a waiter takes it
        over once it saw it unchanged for a whole lease."""
        lease = self.claims.lease
        return self.sent + lease - lease / 3

    def safe(self) -> bool:
        """True while the claim is safe (:attr:`safe_until`), for the write or
        the work that follows."""
        return self.claims.clock() < self.safe_until

    async def renew(self, within: float) -> bool:
        """Renew now, waiting at most ``within`` seconds for the store; False
        when the claim was taken over, or could not be renewed in time (and
        :attr:`lost` says why)."""
        self.renewals += 1
        sent = self.claims.clock()
        body = self.claims.body(self.name, self.renewals)
        token: str | None = None
        # No time left (a renewal due once the claim is no longer safe: after
        # failed ones, or a pause): it is tried all the same, and stands if
        # the store answers before it has to wait.
        with anyio.move_on_after(max(within, 0.0)) as scope:
            try:
                token = await self.claims.store.replace_claim(
                    self.prefix, self.name, self.token, body
                )
            except Exception as exc:  # a store error: the claim may still hold; retry
                logger.warning("step %s: cannot renew its claim: %s", self.name, exc)
                self._failed = str(exc)
                if not self.safe():
                    self.lost = (
                        f"its claim could not be renewed before the lease could expire ({exc})"
                    )
                return self.lost is None
        if scope.cancelled_caught and within <= 0:  # not waited for: no time was left
            after = "" if self._failed is None else f" (the last renewal failed: {self._failed})"
            self.lost = f"its claim could not be renewed before the lease could expire{after}"
            return False
        if scope.cancelled_caught:  # a store that does not answer (a partition)
            self.lost = (
                "the store did not answer a renewal while a third of the lease was left "
                "(before another runner could take the claim over)"
            )
            self._deletable = False
            return False
        if token is None:
            self.lost = "another runner took its claim over, or it was removed"
            self._deletable = False
            return False
        self.token, self.sent, self._failed = token, sent, None
        return True

    async def keep(self, scope: anyio.CancelScope) -> None:
        """Renew every ``lease / 3`` until cancelled; on a loss, cancel ``scope``
        (the step's activities). A renewal that failed is retried after
        ``lease / 12``, as is one due when the claim is no longer safe: a
        third of a lease later, the claim would be unsafe already, and one
        store error would cost it. A renewal waits for the store only while
        the claim is :meth:`safe`, as a failed one is retried only then: a
        partitioned holder stops its work a third of a lease before another
        runner could take over, not when the lease expires (the work must
        have time to stop) nor when the store's client gives up."""
        lease = self.claims.lease
        while True:
            await self.claims.sleep(lease / 12 if self._failed or not self.safe() else lease / 3)
            if not await self.renew(within=self.safe_until - self.claims.clock()):
                scope.cancel()
                return

    async def check(self) -> None:
        """Before the marker write: raise :class:`ClaimLost` unless the claim
        certainly holds (renewing it first when the lease runs short)."""
        if self.lost is None and not self.safe():
            await self.renew(within=self.claims.lease / 3)
            if self.lost is None and not self.safe():
                self.lost = "the lease could expire before the marker is written"
        if self.lost is not None:
            raise ClaimLost(self.name, self.lost)

    async def release(self) -> None:
        """Delete the claim if it is still this runner's: shielded from the
        caller's cancellation, and waiting for the store a third of a lease at
        most (a runner cancelled during a partition must not wait out the
        store client's retries). A failure is logged: the claim then goes
        stale after a lease.

        A claim lost because its renewals failed is released too (the delete
        is conditional on its token: one taken over since is left alone), so
        that the next runner need not wait a lease for it to go stale; not
        one taken over, nor one whose store did not answer a renewal (a
        partition: the release would wait for it too)."""
        if self._released or not self._deletable:
            return
        self._released = True
        with anyio.move_on_after(self.claims.lease / 3, shield=True) as scope:
            try:
                await self.claims.store.delete_claim(self.prefix, self.name, self.token)
            except Exception as exc:
                logger.warning("step %s: cannot release its claim: %s", self.name, exc)
        if scope.cancelled_caught:
            logger.warning(
                "step %s: the store did not answer the release of its claim within %g s; "
                "the claim goes stale after a lease",
                self.name,
                self.claims.lease / 3,
            )
