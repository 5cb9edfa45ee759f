"""asteps: simpleflow's Steps for asyncio.

    runner = Runner(FileStore(".asteps"), "customer-42")
    outcome = await runner.step("export.csv", export_csv)

Everything users need is importable from here; module layout is private.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._batch import BatchRun, BatchSummary
from ._bus import EventBus, Overflow, Signal, Subscription
from ._canvas import Activity, Chain, Group, run_activity
from ._decision import Decision, decide
from ._ids import BadId, IdReader, IdsLeft
from ._names import covers, validate_name, validate_pattern
from ._retries import Retry
from ._runner import Runner
from ._shards import Shard
from ._step import Marker, OnMissingResult, Status, Step, StepOptions, StepOutcome

# _telemetry imports opentelemetry only when instrument() is called.
from ._telemetry import instrument, uninstrument
from ._workflow import WorkflowReport, run_workflow
from .errors import (
    AstepsError,
    ClaimLost,
    ClaimsNotSupported,
    FlowError,
    InvalidName,
    InvalidPrefix,
    InvalidStepName,
    InvalidWorkflowId,
    MarkDoneError,
    MarkerBodyError,
    MarkersNotReadable,
    ResultMissing,
    ResultNotKept,
    SignalDeliveryError,
    SignalError,
    SignalTimeout,
    StepTimeout,
    StoreError,
    StoreUnreachable,
    UnmarkError,
)
from .stores import (
    DoneStore,
    FileStore,
    MemoryStore,
    ReadsMarkers,
    list_done_many,
    open_store,
    parse_store_url,
    unmark_matching,
)

if TYPE_CHECKING:
    from .stores.s3 import S3Store
    from .swf import (
        EchoGuard,
        SwfSignalBridge,
        SwfSignalListener,
        SwfWorker,
        init_domain,
        prepare,
        submit,
        swf_status,
    )

__version__ = "0.1.0"

# The AWS parts import aioboto3, two thirds of asteps' import time: they load
# on first use, so a service on the file store never pays for them.
_LAZY = {
    "S3Store": ".stores.s3",
    "EchoGuard": ".swf",
    "SwfSignalBridge": ".swf",
    "SwfSignalListener": ".swf",
    "SwfWorker": ".swf",
    "init_domain": ".swf",
    "prepare": ".swf",
    "submit": ".swf",
    "swf_status": ".swf",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asteps' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "Activity",
    "AstepsError",
    "BadId",
    "BatchRun",
    "BatchSummary",
    "Chain",
    "ClaimLost",
    "ClaimsNotSupported",
    "Decision",
    "DoneStore",
    "EchoGuard",
    "EventBus",
    "FileStore",
    "FlowError",
    "Group",
    "IdReader",
    "IdsLeft",
    "InvalidName",
    "InvalidPrefix",
    "InvalidStepName",
    "InvalidWorkflowId",
    "MarkDoneError",
    "Marker",
    "MarkerBodyError",
    "MarkersNotReadable",
    "MemoryStore",
    "OnMissingResult",
    "Overflow",
    "ReadsMarkers",
    "ResultMissing",
    "ResultNotKept",
    "Retry",
    "Runner",
    "S3Store",
    "Shard",
    "Signal",
    "SignalDeliveryError",
    "SignalError",
    "SignalTimeout",
    "Status",
    "Step",
    "StepOptions",
    "StepOutcome",
    "StepTimeout",
    "StoreError",
    "StoreUnreachable",
    "Subscription",
    "SwfSignalBridge",
    "SwfSignalListener",
    "SwfWorker",
    "UnmarkError",
    "WorkflowReport",
    "covers",
    "decide",
    "init_domain",
    "instrument",
    "list_done_many",
    "open_store",
    "parse_store_url",
    "prepare",
    "run_activity",
    "run_workflow",
    "submit",
    "swf_status",
    "uninstrument",
    "unmark_matching",
    "validate_name",
    "validate_pattern",
]
