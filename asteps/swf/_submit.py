"""Start one SWF execution per workflow id: :func:`submit`.

Everything is checked locally first (the flow loads, its parameters fit, the
patterns, the prefix and the store URL are valid, the input fits SWF's
32,768 characters), then SWF once (the domain and the workflow type exist);
only then are executions started, at most ``rps`` a second, ``concurrency``
calls at once. A throttled start is retried: by botocore (5 attempts in all),
then here, after 1, 2, 4, 8 and 16 seconds. An id whose execution is open
already is "already running": SWF refuses a second open execution of one
workflow id, so nothing runs twice at once.

At most ``max_open`` executions of the batch are open at once (see
``._window``): past that, a start waits for one to close. SWF's own quota
(100,000 open executions per domain, counting other work) is waited on the
same way: a ``LimitExceededFault`` is retried after 1, 2, 4... up to 30
seconds, for as long as it takes, never reported as a refused id. With
``shard``, only the ids of that shard start (see ``asteps._shards``).

A stop (``stop`` set, SWF refusing every call) stops reading the ids where
they are: it costs time and memory in proportion to the starts in flight,
never to the ids left, and the summary says the line to go on from
(``next_line``), as a stopped ``rerun`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from .._flows import check_params, load_flow
from .._ids import BadId, IdReader, IdSource, IterableIds
from .._names import (
    DEFAULT_PREFIX,
    check_prefix_per_workflow,
    shown,
    validate_patterns,
    validate_workflow_id,
)
from .._pipeline import Pipeline
from .._shards import Shard
from ..errors import InvalidName, InvalidWorkflowId
from ..stores.urls import parse_store_url
from ._client import (
    ALREADY_STARTED,
    FATAL,
    LIMIT_EXCEEDED,
    THROTTLED,
    SwfClientOptions,
    check_domain,
    check_type,
    error_code,
    explain,
)
from ._types import (
    DEFAULT_TASK_LIST,
    DEFAULT_VERSION,
    FLOW_TYPE,
    FlowInput,
    FlowInputError,
    RetryPolicy,
    explain_input,
)
from ._window import DEFAULT_MAX_OPEN, OpenWindow, batch_tag

EXECUTION_TIMEOUT = 365 * 24 * 3600
"""SWF's longest: an execution may wait for a free worker, then run, as long as
it takes; heartbeats, not this, catch a dead worker."""

_THROTTLE_WAITS = (1, 2, 4, 8, 16)
_LIMIT_WAITS = (1, 2, 4, 8, 16, 30)  # then 30 s each time

Outcome = Literal["started", "already running", "refused", "repeated"]
"""What became of one workflow id in a submit (what ``on_id`` is told)."""


KEPT_IDS = 1000
"""Started and already running ids a submit's summary keeps (the started
with their run ids); the others are counted."""


@dataclass
class SubmitSummary:
    """What a submit did: how many ids started and were already running, the
    ids refused (with the reason), and, when it stopped early, those not tried.

    Memory is flat in the number of ids, as a batch's is: of the ids started
    and already running, the summary keeps counts and the first ``KEPT_IDS``.
    The ids refused and not tried are kept whole: they are the ids to submit
    again (``retry_ids``)."""

    started: int = 0
    """Executions started."""
    started_ids: dict[str, str] = field(default_factory=dict)
    """The first ``KEPT_IDS`` ids started, with their run ids."""
    already_running: int = 0
    """Ids whose execution was open already (SWF refuses a second one)."""
    already_running_ids: list[str] = field(default_factory=list)
    """The first ``KEPT_IDS`` ids already running."""
    refused: dict[str, str] = field(default_factory=dict)
    """Every id refused, with the reason."""
    unfinished: list[str] = field(default_factory=list)
    """After a stop: the ids read and not tried."""
    repeated: int = 0
    """Ids passed over because the same id was being started: an id is never
    started twice at once. One that comes again after its start is started
    again, which SWF refuses while the first execution is open ("already
    running")."""
    interrupted: bool = False
    aborted: str | None = None
    """Why the submit stopped on its own (SWF refused every call), if it did."""
    elapsed: float = 0.0
    stopped_at: str | None = None
    """After a stop: where reading the ids stopped, in words (``line 1,235``);
    None when every id was read. The ids from there on are in no list."""
    next_line: int | None = None
    """After a stop of a submit over an ids file (an :class:`IdReader`): the
    line to go on from (1-based); the ids before it that were not started are
    in ``refused`` or ``unfinished``."""
    shard: str | None = None
    """The shard submitted (``"0/4"``), when the submit took one shard of its ids."""
    other_shards: int = 0
    """Ids read and left to the other shards (not started, not in any list)."""
    max_open: int | None = None
    """The most executions of the batch kept open at once."""
    waited: float = 0.0
    """Seconds during which starts waited for executions to close (the
    window full, or SWF's quota reached)."""

    @property
    def stopped(self) -> bool:
        """Whether the submit stopped before its ids were over."""
        return self.interrupted or self.aborted is not None

    def record(self, wid: str, outcome: Outcome, detail: str = "") -> None:
        """Count what became of ``wid`` (``submit`` calls it for each id, before
        ``on_id``): ``detail`` is a started execution's run id, or a refused
        id's reason."""
        if outcome == "started":
            self.started += 1
            if len(self.started_ids) < KEPT_IDS:
                self.started_ids[wid] = detail
        elif outcome == "already running":
            self.already_running += 1
            if len(self.already_running_ids) < KEPT_IDS:
                self.already_running_ids.append(wid)
        elif outcome == "repeated":
            self.repeated += 1
        else:
            self.refused[wid] = detail

    @property
    def retry_ids(self) -> list[str]:
        """The ids to submit again: refused, then not tried."""
        return [*self.refused, *self.unfinished]

    def as_dict(self) -> dict[str, Any]:
        """As JSON-able data (the CLI's ``--json``)."""
        return {
            "started": self.started,
            "already_running": self.already_running,
            "refused": len(self.refused),
            "unfinished": len(self.unfinished),
            "repeated": self.repeated,
            "interrupted": self.interrupted,
            "aborted": self.aborted,
            "elapsed": round(self.elapsed, 3),
            "stopped_at": self.stopped_at,
            "next_line": self.next_line,
            "shard": self.shard,
            "other_shards": self.other_shards,
            "max_open": self.max_open,
            "waited": round(self.waited, 3),
            "started_ids": self.started_ids,
            "already_running_ids": self.already_running_ids,
            "refused_ids": self.refused,
            "unfinished_ids": self.unfinished,
        }


class RateLimiter:
    """At most ``rate`` calls a second, evenly spaced, in arrival order (anyio's
    Lock is FIFO)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rps must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._lock = anyio.Lock()
        self._next = 0.0

    async def wait(self) -> None:
        async with self._lock:
            now = anyio.current_time()
            if self._next > now:
                await anyio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval


def prepare(
    flow: str,
    *,
    params: Mapping[str, str] | None = None,
    force: Sequence[str] = (),
    skip: Sequence[str] = (),
    reason: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    store: str | None = None,
    retry: RetryPolicy | None = None,
) -> FlowInput:
    """The input every execution gets, checked: raises
    :class:`~asteps.errors.FlowError`, :class:`~asteps.errors.InvalidName`,
    :class:`~asteps.errors.StoreError` or :class:`FlowInputError` (too long,
    or a field out of bounds). ``retry`` is the executions' retry policy (the
    defaults without it), recorded in their input for every decider."""
    loaded = load_flow(flow)
    check_params(loaded, dict(params or {}))
    validate_patterns([*force, *skip])
    check_prefix_per_workflow(prefix)
    if store is not None:
        parse_store_url(store)
    try:
        spec = FlowInput(
            flow=flow,
            params=dict(params or {}),
            force=tuple(force),
            skip=tuple(skip),
            reason=reason,
            prefix=prefix,
            store=store,
            retry=retry or RetryPolicy(),
        )
    except ValidationError as exc:
        raise FlowInputError(explain_input(exc, options=True)) from None
    spec.to_json()  # the size check
    return spec


def spelling_warning(flow: str) -> str | None:
    """Why workers may accept none of the executions of ``flow``, as spelled, or None.

    A worker accepts an execution when its flow resolves, on the worker's
    machine and from the worker's working directory, to the worker's own
    flow. A file spelled with an absolute path, or one reaching out of the
    working directory with ``..``, resolves to the same file only on a
    worker whose checkout sits at that very path.
    """
    module_part = flow.rpartition(":")[0]
    if not (module_part.endswith(".py") or "/" in module_part):
        return None
    path = PurePath(module_part)
    if not path.is_absolute() and ".." not in path.parts:
        return None
    return (
        f"flow {shown(flow)} names a file by its place on this machine; a worker accepts "
        "these executions only if its own flow resolves to that same path. Spell the flow "
        "as the workers do (relative to their working directory, e.g. flows.py:flow), or "
        "check that their checkout is at that path"
    )


def check_swf_workflow_id(workflow_id: str) -> str:
    """An asteps workflow id that SWF also takes: no ``:``, ``|`` (``/`` and
    control characters asteps refuses already), and not ``arn``."""
    validate_workflow_id(workflow_id)
    if ":" in workflow_id or "|" in workflow_id or workflow_id == "arn":
        raise InvalidWorkflowId(
            f"workflow id {workflow_id!r} cannot be an SWF workflowId (no ':' or '|', "
            "and not 'arn'): rename it"
        )
    return workflow_id


async def submit(
    spec: FlowInput,
    ids: Iterable[str | BadId] | IdReader,
    *,
    domain: str,
    task_list: str = DEFAULT_TASK_LIST,
    version: str = DEFAULT_VERSION,
    rps: float = 50.0,
    concurrency: int = 16,
    decision_timeout: int = 30,
    max_open: int = DEFAULT_MAX_OPEN,
    shard: Shard | None = None,
    poll_every: float = 5.0,
    stop: anyio.Event | None = None,
    on_id: Callable[[str, Outcome, SubmitSummary], None] | None = None,
    on_wait: Callable[[bool], None] | None = None,
    session: aioboto3.Session | None = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    client_config: AioConfig | None = None,
) -> SubmitSummary:
    """Start an execution of ``spec`` (from :func:`prepare`) for every id; a
    bad id is refused with its reason, the others go on. This is a batch
    pipeline (``asteps._pipeline``) whose work is StartWorkflowExecution: an
    id is never started twice at once, and an id that comes again once its
    execution started is "already running" (SWF refuses a second open one).

    Raises :class:`SwfNotSetUp` (domain or type missing) or :class:`SwfError`
    (SWF unreachable) before starting anything. Setting ``stop`` stops
    starting and reading: the ids read and not tried are in
    :attr:`SubmitSummary.unfinished`, and :attr:`SubmitSummary.next_line` is
    the line of the ids file to go on from.

    At most ``max_open`` executions started by this submit are open at once;
    a start waits for one to close (SWF is polled every ``poll_every``
    seconds meanwhile), and ``on_wait`` is told when starts begin and stop
    waiting. ``shard`` keeps only the ids of that shard.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    check_prefix_per_workflow(spec.prefix)  # a FlowInput need not come from prepare()
    text = spec.to_json()
    limiter = RateLimiter(rps)
    source: IdSource = ids if isinstance(ids, IdReader) else IterableIds(ids)
    summary = SubmitSummary(shard=None if shard is None else str(shard), max_open=max_open)
    tag = batch_tag()
    started = time.perf_counter()
    config = AioConfig(max_pool_connections=concurrency + 2)
    options = SwfClientOptions(
        session, endpoint_url, region_name, config.merge(client_config) if client_config else config
    )
    async with AsyncExitStack() as stack:
        client = await options.open(stack)
        await check_setup(client, domain, version)
        window = OpenWindow(
            client, domain, max_open, tag=tag, poll_every=poll_every, on_wait=on_wait
        )

        def record(wid: str, outcome: Outcome, detail: str = "") -> None:
            summary.record(wid, outcome, detail)
            if on_id is not None:
                on_id(wid, outcome, summary)

        async def check(wid: str) -> str | None:
            try:
                return check_swf_workflow_id(wid)
            except InvalidName as exc:
                record(wid, "refused", str(exc))
                return None

        async def start_one(wid: str) -> bool:
            """Whether ``wid`` is done with: False when SWF failed the submit."""
            await window.acquire()
            try:
                answer = await start_throttled(wid)
            except ClientError as exc:
                window.release()
                why, code = explain(exc), error_code(exc)
                if code in ALREADY_STARTED:
                    record(wid, "already running")
                elif code in FATAL:
                    pipeline.abort(why)
                    return False
                else:
                    record(wid, "refused", why)
                return True
            except BotoCoreError as exc:
                window.release()
                pipeline.abort(f"cannot reach SWF: {explain(exc)}")
                return False
            window.started(str(answer["runId"]), wid)
            record(wid, "started", str(answer["runId"]))
            return True

        async def start_throttled(wid: str) -> Any:
            throttles = iter(_THROTTLE_WAITS)
            limits = 0
            while True:
                await limiter.wait()
                try:
                    return await client.start_workflow_execution(
                        domain=domain,
                        workflowId=wid,
                        workflowType={"name": FLOW_TYPE, "version": version},
                        taskList={"name": task_list},
                        input=text,
                        executionStartToCloseTimeout=str(EXECUTION_TIMEOUT),
                        taskStartToCloseTimeout=str(decision_timeout),
                        childPolicy="TERMINATE",
                        tagList=[tag],
                    )
                except ClientError as exc:
                    code = error_code(exc)
                    if code in LIMIT_EXCEEDED:
                        # The domain is full (other work counts too): its
                        # executions close in time; this id waits, as long as it takes.
                        pause = _LIMIT_WAITS[min(limits, len(_LIMIT_WAITS) - 1)]
                        limits += 1
                        with window.waiting():
                            await anyio.sleep(pause)
                        continue
                    if code not in THROTTLED:
                        raise
                    if (wait := next(throttles, None)) is None:
                        raise
                await anyio.sleep(wait)

        pipeline: Pipeline[str] = Pipeline(
            concurrency=concurrency,
            prepare=check,
            work=start_one,
            refuse=lambda wid, why: record(wid, "refused", why),
            repeat=lambda wid: record(wid, "repeated"),
            shard=shard,
        )

        async def watch_window() -> None:
            try:
                await window.watch()
            except ClientError as exc:
                pipeline.abort(
                    f"cannot see which executions closed ({explain(exc)}): allow "
                    "swf:ListClosedWorkflowExecutions"
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_window)
            end = await pipeline.run(source, stop)
            tg.cancel_scope.cancel()
    summary.interrupted, summary.aborted = end.interrupted, end.aborted
    summary.other_shards, summary.unfinished = end.other_shards, end.unfinished
    summary.stopped_at, summary.next_line = end.stopped_at, end.next_line
    summary.waited = window.waited
    summary.elapsed = time.perf_counter() - started
    return summary


async def check_setup(client: Any, domain: str, version: str) -> None:
    """The domain (the one check of :func:`check_domain`) and the workflow and
    activity types must exist, and not be deprecated, before anything starts:
    a deprecated activity type would fail every execution started, at its
    first decision."""
    await check_domain(client, domain)
    for kind in ("workflow", "activity"):
        await check_type(client, domain, kind, version)
