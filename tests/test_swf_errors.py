"""SWF errors are told apart by their code, never by searching a message; the
domain is checked one way everywhere; what the bridge and the listener close
hands the block's exception back as itself, and never drops a task's failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, EndpointConnectionError

from asteps import EventBus
from asteps._concurrency import leaves
from asteps.swf import (
    Execution,
    SwfError,
    SwfNotSetUp,
    SwfSignalBridge,
    SwfSignalListener,
    swf_status,
)
from asteps.swf._client import ALREADY_EXISTS, FATAL, UNKNOWN_RESOURCE, error_code
from asteps.swf._registration import init_domain
from asteps.swf._resources import ShieldedExitStack, task_group
from asteps.testing import MotoServer

from .conftest import SwfWorld


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeDomain")


def test_the_code_of_an_error_is_its_code_not_words_in_its_message() -> None:
    assert error_code(client_error("UnknownResourceFault", "Unknown domain: d")) in UNKNOWN_RESOURCE
    # A message that mentions a fault is not that fault.
    mentions = client_error("ValidationException", "UnknownResourceFault or AlreadyExists?")
    assert error_code(mentions) == "ValidationException"
    assert error_code(mentions) not in UNKNOWN_RESOURCE | ALREADY_EXISTS | FATAL
    assert error_code(EndpointConnectionError(endpoint_url="http://x")) is None
    assert error_code(ValueError("UnknownResourceFault")) is None


async def test_swf_answers_give_the_codes_the_named_sets_hold(aws: MotoServer) -> None:
    async with aws.session().client("swf", endpoint_url=aws.endpoint_url) as client:
        # botocore's class for the fault is a ClientError: its code serves both.
        with pytest.raises(client.exceptions.UnknownResourceFault) as unknown:
            await client.describe_domain(name="nowhere")
        assert error_code(unknown.value) in UNKNOWN_RESOURCE
        assert error_code(unknown.value) in FATAL
        await client.register_domain(name="d", workflowExecutionRetentionPeriodInDays="1")
        with pytest.raises(ClientError) as exists:
            await client.register_domain(name="d", workflowExecutionRetentionPeriodInDays="1")
        assert error_code(exists.value) in ALREADY_EXISTS
        # Registration compares those codes: a second init creates nothing.
        assert await init_domain(client, "d") == [
            "workflow type asteps.flow version 1",
            "activity type asteps.flow version 1",
        ]
        assert await init_domain(client, "d") == []


def opening(what: str, swf: SwfWorld) -> Callable[[], Awaitable[object]]:
    """Open the bridge, the listener or status on the domain 'nowhere'."""
    bus, url = EventBus(), swf.endpoint_url

    async def bridge() -> None:
        async with SwfSignalBridge(
            bus, domain="nowhere", executions=Execution("wf"), endpoint_url=url
        ):
            pass

    async def listener() -> None:
        async with SwfSignalListener(bus, domain="nowhere", workflow_id="wf", endpoint_url=url):
            pass

    async def status() -> None:
        await swf_status("nowhere", endpoint_url=url)

    return {"bridge": bridge, "listener": listener, "status": status}[what]


@pytest.mark.parametrize("what", ["bridge", "listener", "status"])
async def test_an_unknown_domain_is_one_error_everywhere_and_says_how_to_set_it_up(
    swf: SwfWorld, what: str
) -> None:
    with pytest.raises(SwfNotSetUp, match=r"domain 'nowhere' does not exist.*asteps swf init"):
        await opening(what, swf)()


async def test_swf_out_of_reach_is_an_swf_error_that_says_so(aws: MotoServer) -> None:
    with pytest.raises(SwfError, match="cannot reach SWF"):
        await swf_status(
            "d",
            endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
            client_config=AioConfig(retries={"max_attempts": 1, "mode": "standard"}),
        )


class Resource:
    """What the bridge and the listener do: a task group on a shielded stack,
    the block's exception handed to it on close."""

    def __init__(self, task_fails_on_cancel: bool) -> None:
        self.stack = ShieldedExitStack()
        self.task_fails_on_cancel = task_fails_on_cancel

    async def __aenter__(self) -> Resource:
        tasks = await self.stack.open().enter_async_context(task_group())
        tasks.start_soon(self.task)
        await anyio.wait_all_tasks_blocked()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        exc = exc_info[1]
        await self.stack.close(exc if isinstance(exc, BaseException) else None)

    async def task(self) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            if self.task_fails_on_cancel:
                raise OSError("the task failed while stopping")


async def test_the_blocks_own_exception_comes_out_as_itself() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with Resource(task_fails_on_cancel=False):
            raise KeyError("mine")


async def test_the_blocks_exception_and_a_tasks_failure_both_come_out() -> None:
    with pytest.raises(BaseExceptionGroup) as info:
        async with Resource(task_fails_on_cancel=True):
            raise KeyError("mine")
    assert sorted(type(e).__name__ for e in leaves(info.value)) == ["KeyError", "OSError"]
