"""At most N executions of one submit open at once: :class:`OpenWindow`.

SWF allows 100,000 open executions per domain and refuses a start past that
(``LimitExceededFault``). A submit of more ids than that keeps a window: a
start takes a slot, and a slot comes back when the execution closes.

Why the closed list, and not the open one: SWF's List calls are eventually
consistent. An execution missing from ``ListOpenWorkflowExecutions`` may be
one started a moment ago; an execution in ``ListClosedWorkflowExecutions``
has closed. So a slot is given back only on a positive sighting, and a late
listing only delays it. Every execution of the batch carries one tag (the
window's ``tag``); a poll lists the closed executions with that tag whose
close time is at most ``OVERLAP`` before the latest close seen so far (SWF's
own clock: no skew with ours), page by page. A poll costs one request per
1,000 executions closed in the last ``OVERLAP`` seconds, whatever the size of
the batch, and runs only while a start waits for a slot, at most once every
``poll_every`` seconds.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from ._client import FATAL, error_code, explain

log = logging.getLogger("asteps.swf.submit")

SWF_OPEN_LIMIT = 100_000
"""SWF's quota of open executions per domain."""
DEFAULT_MAX_OPEN = 90_000
"""A submit's default window: under the quota, with room for other work."""
OVERLAP = timedelta(seconds=60)
"""How far back each poll lists again: a close that the listing shows late
(eventual consistency) is still seen."""
_FIRST_LOOK_BACK = timedelta(minutes=15)  # clock skew between SWF and us
_PAGE = 1000


def batch_tag() -> str:
    """A tag unique to one submit (SWF tags: at most 256 characters)."""
    return f"asteps-submit:{secrets.token_hex(8)}"


class OpenWindow:
    """Slots for the executions one submit keeps open, given back as they close.

    ``acquire`` before a start; ``started`` when it started (the slot is held
    until the execution is seen closed), ``release`` when it did not start.
    ``watch`` (a task of the submit) polls SWF while a start waits. ``on_wait``
    is told whether some start waits (for a slot, or for SWF's own quota, see
    :meth:`waiting`).
    """

    def __init__(
        self,
        client: Any,
        domain: str,
        limit: int,
        *,
        tag: str,
        poll_every: float = 5.0,
        on_wait: Callable[[bool], None] | None = None,
    ) -> None:
        if not 1 <= limit <= SWF_OPEN_LIMIT:
            raise ValueError(f"max_open must be 1 to {SWF_OPEN_LIMIT:,}, got {limit}")
        if not poll_every > 0:
            raise ValueError(f"poll_every must be positive, got {poll_every}")
        self.client = client
        self.domain = domain
        self.limit = limit
        self.tag = tag
        self.poll_every = poll_every
        self._slots = anyio.Semaphore(limit)
        self._open: dict[str, str] = {}  # run id -> workflow id
        self._wanted = anyio.Event()
        self._since = datetime.now(UTC) - _FIRST_LOOK_BACK
        self._waiters = 0
        self._on_wait = on_wait
        self.waited = 0.0
        """Seconds during which some start waited."""
        self._waiting_since = 0.0
        self.polls = 0

    @property
    def open(self) -> int:
        """Executions of this batch started and not yet seen closed."""
        return len(self._open)

    async def acquire(self) -> None:
        """Wait for a slot."""
        if self._slots.value > 0:
            await self._slots.acquire()
            return
        self._wanted.set()
        with self.waiting():
            await self._slots.acquire()

    def release(self) -> None:
        """Give back the slot of a start that did not start an execution."""
        self._slots.release()

    def started(self, run_id: str, workflow_id: str) -> None:
        """The slot is held by this execution until it is seen closed."""
        self._open[run_id] = workflow_id

    def waiting(self) -> _Waiting:
        """A context in which a start waits (the progress bar says so)."""
        return _Waiting(self)

    async def watch(self) -> None:
        """Poll SWF for closed executions while a start waits for a slot; runs
        until cancelled. Raises :class:`ClientError` if SWF refuses the
        listing for good (``AccessDenied``): nothing would ever close then."""
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            while self._slots.statistics().tasks_waiting > 0:
                await anyio.sleep(self.poll_every)
                await self.poll()

    async def poll(self) -> int:
        """List the batch's executions closed lately; give back their slots.
        Returns how many slots came back."""
        self.polls += 1
        freed = 0
        latest = self._since
        token: str | None = None
        try:
            while True:
                request: dict[str, Any] = {
                    "domain": self.domain,
                    "closeTimeFilter": {"oldestDate": self._since},
                    "tagFilter": {"tag": self.tag},
                    "maximumPageSize": _PAGE,
                }
                if token:
                    request["nextPageToken"] = token
                page = await self.client.list_closed_workflow_executions(**request)
                for info in page.get("executionInfos", []):
                    if self._open.pop(info["execution"]["runId"], None) is not None:
                        self._slots.release()
                        freed += 1
                    closed = info.get("closeTimestamp")
                    if isinstance(closed, datetime) and closed > latest:
                        latest = closed
                token = page.get("nextPageToken")
                if not token:
                    break
        except ClientError as exc:
            if error_code(exc) in FATAL:
                raise
            log.warning("listing the closed executions failed (%s); trying again", explain(exc))
        except BotoCoreError as exc:
            log.warning("listing the closed executions failed (%s); trying again", explain(exc))
        self._since = max(self._since, latest - OVERLAP)
        return freed

    def _tell(self, change: int) -> None:
        before = self._waiters
        self._waiters += change
        now = anyio.current_time()
        if before == 0 and self._waiters > 0:
            self._waiting_since = now
        elif before > 0 and self._waiters == 0:
            self.waited += now - self._waiting_since
        if (before == 0) != (self._waiters == 0) and self._on_wait is not None:
            self._on_wait(self._waiters > 0)


class _Waiting:
    def __init__(self, window: OpenWindow) -> None:
        self.window = window

    def __enter__(self) -> None:
        self.window._tell(+1)

    def __exit__(self, *exc: object) -> None:
        self.window._tell(-1)
