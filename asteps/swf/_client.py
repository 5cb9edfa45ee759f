"""The SWF client the bridge, the listener and the worker each hold: opening
it, checking the domain and executions it will talk to, reading its errors.

Errors are told apart by their code (:func:`error_code`), compared with the
named sets below; a formatted message is for people, never searched. SWF's
JSON protocol gives the fault's name (``UnknownResourceFault``), which is also
the name of the botocore exception class (``client.exceptions.UnknownResourceFault``):
the code serves both, and moto's answers alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any, NamedTuple

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from .._aws import SETUP_ERRORS, SETUP_HINT, client_config, open_client
from ..errors import SignalError, SwfError, SwfNotSetUp, describe
from ._types import FLOW_TYPE

UNKNOWN_RESOURCE = frozenset({"UnknownResourceFault"})
"""SWF does not know the domain, type, execution or task (it may have timed
out, closed, or been answered by another worker)."""

ALREADY_EXISTS = frozenset({"DomainAlreadyExistsFault", "TypeAlreadyExistsFault"})
"""A registration found the domain or type there already."""

ALREADY_STARTED = frozenset({"WorkflowExecutionAlreadyStartedFault"})
"""An execution of that workflow id is open already."""

LIMIT_EXCEEDED = frozenset({"LimitExceededFault"})
"""A quota of the domain (its open executions): wait for some to close."""

THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
"""Too many requests a second: slow down and try again."""

FATAL = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "UnknownResourceFault",
        "TypeDeprecatedFault",
        "DomainDeprecatedFault",
    }
)
"""Errors after which no other call can succeed either: stop (a submit, its window)."""


def error_code(exc: BaseException) -> str | None:
    """The code of an AWS error (``"UnknownResourceFault"``); None for any other
    exception, a network or credentials error (``BotoCoreError``) included."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return None if code is None else str(code)
    return None


class Execution(NamedTuple):
    """One SWF workflow execution: ``Execution("customer-42")`` is whichever
    run of that workflow id is open, ``Execution("customer-42", run_id)`` one
    run. A tuple, so ``(workflow_id, run_id)`` pairs are equal to it."""

    workflow_id: str
    run_id: str | None = None


class SwfClientOptions:
    """How to reach SWF: what the bridge and the listener take as keyword arguments."""

    def __init__(
        self,
        session: aioboto3.Session | None,
        endpoint_url: str | None,
        region_name: str | None,
        config: AioConfig | None,
    ) -> None:
        self.session = session
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.config = client_config(config)

    async def open(self, stack: AsyncExitStack) -> Any:
        """An aioboto3 SWF client, closed with ``stack``; :class:`SwfError` when
        the AWS environment (endpoint, profile, region) is wrong."""
        try:
            return await open_client(
                stack,
                "swf",
                session=self.session,
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                config=self.config,
            )
        except SETUP_ERRORS as exc:
            raise SwfError(f"cannot open an SWF client: {describe(exc)}; {SETUP_HINT}") from exc


@asynccontextmanager
async def open_swf_client(
    *,
    session: aioboto3.Session | None = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    client_config: AioConfig | None = None,
) -> AsyncIterator[Any]:
    """An aioboto3 SWF client, configured as asteps' own clients are, and
    closed on exit: for :func:`init_domain`, or calls of your own.

    Credentials, region and endpoint come from the standard AWS environment
    (``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``...) unless given.
    """
    options = SwfClientOptions(session, endpoint_url, region_name, client_config)
    async with AsyncExitStack() as stack:
        yield await options.open(stack)


async def check_domain(client: Any, domain: str) -> None:
    """The domain must exist: a typo should stop what is starting, not idle it.

    Raises :class:`SwfNotSetUp` when SWF does not know ``domain``, and
    :class:`SwfError` when SWF refuses the question or cannot be reached.
    The one check of a domain: the worker, the bridge, the listener, status
    and submit all make it.
    """
    missing = (
        f"SWF domain {domain!r} does not exist: create it with "
        f"`asteps swf init --domain {domain}`, or check the region"
    )
    with asking_swf_about(domain, lambda _: missing):
        await client.describe_domain(name=domain)


@contextmanager
def asking_swf_about(domain: str, missing: Callable[[ClientError], str]) -> Iterator[None]:
    """Around a ``describe_*`` call that checks what must exist before anything
    starts: raises :class:`SwfNotSetUp` saying ``missing(error)`` when SWF does
    not know it, :class:`SwfError` when SWF refuses the question or cannot be
    reached."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) in UNKNOWN_RESOURCE:
            raise SwfNotSetUp(missing(exc)) from exc
        raise SwfError(f"SWF domain {domain!r}: {explain(exc)}") from exc
    except BotoCoreError as exc:
        raise SwfError(f"cannot reach SWF: {explain(exc)}; check the endpoint") from exc


async def check_type(client: Any, domain: str, kind: str, version: str) -> None:
    """The ``kind`` type (``"workflow"``, ``"activity"``) ``asteps.flow`` of
    ``version`` must be registered in ``domain`` and not deprecated: raises
    :class:`SwfNotSetUp` saying what helps when it is missing (``swf init``)
    or deprecated (SWF does not register a deprecated version again), and
    :class:`SwfError` when SWF refuses the question or cannot be reached."""
    what = f"{kind} type {FLOW_TYPE} version {version}"
    describe_type = (
        client.describe_workflow_type if kind == "workflow" else client.describe_activity_type
    )

    def missing(exc: ClientError) -> str:
        return (
            f"SWF domain {domain!r} has no {what} ({explain(exc)}): "
            f"run `asteps swf init --domain {domain}`"
        )

    with asking_swf_about(domain, missing):
        described = await describe_type(
            domain=domain, **{f"{kind}Type": {"name": FLOW_TYPE, "version": version}}
        )
    if described.get("typeInfo", {}).get("status") == "DEPRECATED":
        raise SwfNotSetUp(
            f"the {what} is deprecated in SWF domain {domain!r}, and SWF does not register "
            "it again: run `asteps swf init`, `swf submit` and `swf worker` with a new "
            "--type-version, or undeprecate it"
        )


async def resolve_run(client: Any, domain: str, workflow_id: str, run_id: str | None) -> str:
    """The run id of an execution: the given one (checked), or the open run's.

    Raises :class:`SignalError` naming the execution when SWF does not know it,
    :class:`SwfError` when SWF cannot be reached.
    """
    try:
        if run_id is not None:
            await client.describe_workflow_execution(
                domain=domain, execution={"workflowId": workflow_id, "runId": run_id}
            )
            return run_id
        page = await client.list_open_workflow_executions(
            domain=domain,
            startTimeFilter={"oldestDate": 0},
            executionFilter={"workflowId": workflow_id},
        )
    except ClientError as exc:
        raise SignalError(
            f"SWF execution {workflow_id!r} (run {run_id or 'open'}) in domain {domain!r}: "
            f"{explain(exc)}; check the workflow id and run id"
        ) from exc
    except BotoCoreError as exc:
        raise SwfError(f"cannot reach SWF: {explain(exc)}; check the endpoint") from exc
    infos = page.get("executionInfos", [])
    if not infos:
        raise SignalError(
            f"SWF execution {workflow_id!r} has no open run in domain {domain!r}: start it, "
            "or give the run id of a closed one"
        )
    return str(max(infos, key=lambda i: i["startTimestamp"])["execution"]["runId"])


def explain(exc: BaseException) -> str:
    """An SWF error as ``Code: message``; any other error as its type and message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return describe(exc)
