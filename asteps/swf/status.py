"""How a distributed batch stands: :func:`swf_status`.

Executions of type ``asteps.flow`` are counted by state from the paginated
ListOpen/ListClosedWorkflowExecutions calls (not the Count calls: moto does
not answer them, and a list also gives the failed ids). The type and start
time are filtered again here, since moto ignores those filters.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from .._names import shown
from ._client import SwfClientOptions, check_domain, explain
from ._types import DEFAULT_VERSION, FLOW_TYPE, SwfError

STATES = ("open", "completed", "failed", "timed_out", "terminated", "canceled")
_CLOSE_STATUS = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "TIMED_OUT": "timed_out",
    "TERMINATED": "terminated",
    "CANCELED": "canceled",
}
_FAILED = ("failed", "timed_out")


@dataclass
class SwfStatus:
    """Executions by state; ``failed_ids``: the workflow ids whose latest
    execution failed or timed out (a later success or open run clears an id)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    failed_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``{"open": n, ..., "canceled": n, "failed_ids": [...]}``."""
        return {**self.counts, "failed_ids": self.failed_ids}


MAX_SINCE_DAYS = 1000
"""The longest ``--since``: SWF keeps an execution at most a year open and
90 days closed, so anything longer means "everything"."""


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d`` as seconds, over 0 and at most
    ``MAX_SINCE_DAYS`` days; ValueError otherwise (a number needs its unit)."""
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,6})?)\s*([smhd])\s*", text)
    if not match:
        raise ValueError(
            f"duration {shown(text)} is not understood: use a number with its unit, "
            "s, m, h or d (90s, 30m, 7d)"
        )
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    seconds = float(match.group(1)) * unit
    if not 0 < seconds <= MAX_SINCE_DAYS * 86400:
        raise ValueError(
            f"duration {shown(text)} must be over 0 and at most {MAX_SINCE_DAYS}d; leave "
            "--since out to see every execution SWF keeps"
        )
    return seconds


async def swf_status(
    domain: str,
    *,
    since: float | None = None,
    version: str = DEFAULT_VERSION,
    session: aioboto3.Session | None = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    client_config: AioConfig | None = None,
) -> SwfStatus:
    """Count the ``asteps.flow`` executions (type ``version``) of ``domain``
    started in the last ``since`` seconds (all those SWF keeps, without it).

    Raises :class:`SwfNotSetUp` for an unknown domain, :class:`SwfError` when
    SWF cannot be reached.
    """
    oldest = time.time() - since if since is not None else 0.0
    status = SwfStatus()
    latest: dict[str, tuple[float, str]] = {}
    options = SwfClientOptions(session, endpoint_url, region_name, client_config)
    async with AsyncExitStack() as stack:
        client = await options.open(stack)
        await check_domain(client, domain)
        try:
            async for info in _executions(client, domain, version, oldest):
                state = _state(info)
                if state is None:
                    continue
                status.counts[state] += 1
                wid, started = info["execution"]["workflowId"], _seconds(info["startTimestamp"])
                if wid not in latest or started >= latest[wid][0]:
                    latest[wid] = (started, state)
        except ClientError as exc:
            raise SwfError(f"listing executions in {domain!r}: {explain(exc)}") from None
        except BotoCoreError as exc:
            raise SwfError(f"cannot reach SWF: {explain(exc)}; check the endpoint") from None
    status.failed_ids = sorted(w for w, (_, state) in latest.items() if state in _FAILED)
    return status


async def _executions(
    client: Any, domain: str, version: str, oldest: float
) -> AsyncIterator[dict[str, Any]]:
    """Every open, then closed, ``asteps.flow`` execution started since ``oldest``."""
    # moto requires the version in a type filter (SWF does not).
    of_type = {"name": FLOW_TYPE, "version": version}
    for call in (client.list_open_workflow_executions, client.list_closed_workflow_executions):
        ask = {
            "domain": domain,
            "startTimeFilter": {"oldestDate": oldest},
            "typeFilter": of_type,
            "maximumPageSize": 1000,
        }
        while True:
            page = await call(**ask)
            for info in page.get("executionInfos", []):
                if info["workflowType"] == of_type and _seconds(info["startTimestamp"]) >= oldest:
                    yield info
            token = page.get("nextPageToken")
            if not token:
                break
            ask["nextPageToken"] = token


def _state(info: dict[str, Any]) -> str | None:
    if info.get("executionStatus") == "OPEN":
        return "open"
    return _CLOSE_STATUS.get(str(info.get("closeStatus")))  # CONTINUED_AS_NEW: not ours


def _seconds(stamp: Any) -> float:
    """botocore gives a datetime; a float is fine too."""
    return float(stamp.timestamp()) if hasattr(stamp, "timestamp") else float(stamp)
