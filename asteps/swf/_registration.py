"""``asteps swf init``: the domain and the two types asteps runs on, registered
if missing (idempotent)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ._client import ALREADY_EXISTS, check_type, error_code, explain
from ._types import DEFAULT_TASK_LIST, DEFAULT_VERSION, FLOW_TYPE, SwfError

DEFAULT_RETENTION_DAYS = 30
"""How long SWF keeps closed executions (and so `asteps swf status` sees them)."""

# Defaults for executions started by other tools; `asteps swf submit` and the
# decider give every timeout explicitly.
_WORKFLOW_DEFAULTS = {
    "defaultTaskList": {"name": DEFAULT_TASK_LIST},
    "defaultExecutionStartToCloseTimeout": str(365 * 24 * 3600),
    "defaultTaskStartToCloseTimeout": "30",
    "defaultChildPolicy": "TERMINATE",
}
_ACTIVITY_DEFAULTS = {
    "defaultTaskList": {"name": DEFAULT_TASK_LIST},
    "defaultTaskHeartbeatTimeout": "30",
    "defaultTaskScheduleToStartTimeout": "NONE",
    "defaultTaskScheduleToCloseTimeout": "NONE",
    "defaultTaskStartToCloseTimeout": "NONE",
}


async def init_domain(
    client: Any,
    domain: str,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    version: str = DEFAULT_VERSION,
) -> list[str]:
    """Register ``domain`` and the workflow and activity types ``asteps.flow``
    (``version``) where missing; what was created, in words (empty: all there).

    Raises :class:`SwfNotSetUp` when a type is there but deprecated (registering
    cannot mend it), :class:`SwfError` when SWF refuses or cannot be reached.
    """
    if not 1 <= retention_days <= 90:
        raise ValueError(f"retention days must be 1 to 90 (SWF's range), got {retention_days}")
    created: list[str] = []
    if await _register(
        client.register_domain,
        name=domain,
        workflowExecutionRetentionPeriodInDays=str(retention_days),
        description="asteps flows (asteps swf)",
    ):
        created.append(f"domain {domain} (retention {retention_days} days)")
    kinds = (
        ("workflow", client.register_workflow_type, _WORKFLOW_DEFAULTS),
        ("activity", client.register_activity_type, _ACTIVITY_DEFAULTS),
    )
    for kind, register, defaults in kinds:
        if await _register(register, domain=domain, name=FLOW_TYPE, version=version, **defaults):
            created.append(f"{kind} type {FLOW_TYPE} version {version}")
        else:  # there already, but perhaps deprecated, which registering cannot mend
            await check_type(client, domain, kind, version)
    return created


async def _register(call: Any, **kwargs: Any) -> bool:
    """True when it was created; False when it existed already."""
    try:
        await call(**kwargs)
    except ClientError as exc:
        if error_code(exc) in ALREADY_EXISTS:
            return False
        raise SwfError(f"registering in SWF failed: {explain(exc)}") from None
    except BotoCoreError as exc:
        raise SwfError(f"cannot reach SWF: {explain(exc)}; check the endpoint") from None
    return True
