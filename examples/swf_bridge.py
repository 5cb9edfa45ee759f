"""Wake a simpleflow workflow on SWF when an asteps service completes a step,
and let the service wait for a signal that the workflow sends back.

Runs against an in-process moto server (no AWS account needed):

    .venv/bin/python examples/swf_bridge.py

In production, drop the moto server and give the real domain and ids; the
simpleflow side is a workflow that waits with ``self.wait_signal("step.export.csv")``.
"""

from __future__ import annotations

import asyncio

from asteps import FileStore, Runner
from asteps.swf import EchoGuard, Execution, SwfSignalBridge, SwfSignalListener
from asteps.testing import MotoServer, moto_server

DOMAIN = "exports"


async def setup_swf(moto: MotoServer) -> str:
    """What the simpleflow side already has: a domain, a type, a running execution."""
    async with moto.session().client("swf", endpoint_url=moto.endpoint_url) as swf:
        await swf.register_domain(name=DOMAIN, workflowExecutionRetentionPeriodInDays="1")
        await swf.register_workflow_type(
            domain=DOMAIN,
            name="ExportWorkflow",
            version="1",
            defaultTaskList={"name": "exports"},
            defaultExecutionStartToCloseTimeout="3600",
            defaultTaskStartToCloseTimeout="60",
            defaultChildPolicy="TERMINATE",
        )
        started = await swf.start_workflow_execution(
            domain=DOMAIN,
            workflowId="customer-42",
            workflowType={"name": "ExportWorkflow", "version": "1"},
        )
        return str(started["runId"])


async def simpleflow_side_approves(moto: MotoServer) -> None:
    """Stands in for the SWF workflow: it signals 'approve' once it saw our step."""
    await asyncio.sleep(0.3)
    async with moto.session().client("swf", endpoint_url=moto.endpoint_url) as swf:
        await swf.signal_workflow_execution(
            domain=DOMAIN, workflowId="customer-42", signalName="approve", input='{"by": "ops"}'
        )


async def service(moto: MotoServer, store_root: str) -> None:
    run_id = await setup_swf(moto)
    runner = Runner(FileStore(store_root), "customer-42", run_id=run_id)

    async def export_csv() -> int:
        return 1200

    # One execution bridged both ways: a shared guard keeps the listener from
    # publishing again the signals the bridge sent.
    guard = EchoGuard()
    async with (
        SwfSignalBridge(
            runner.bus,
            domain=DOMAIN,
            executions=Execution("customer-42", run_id),
            echo_guard=guard,
            endpoint_url=moto.endpoint_url,
            session=moto.session(),
        ),
        SwfSignalListener(
            runner.bus,
            domain=DOMAIN,
            workflow_id="customer-42",
            run_id=run_id,
            poll_interval=0.1,
            echo_guard=guard,
            endpoint_url=moto.endpoint_url,
            session=moto.session(),
        ),
        asyncio.TaskGroup() as tg,
    ):
        tg.create_task(simpleflow_side_approves(moto))
        outcome = await runner.step("export.csv", export_csv, emit_signal=True)
        print(f"step export.csv: {outcome.status} ({outcome.result} rows); signal sent to SWF")
        approval = await runner.wait_signal("approve", timeout=10)
        print(f"SWF signal received on the bus: {approval.name} {approval.payload}")

    async with moto.session().client("swf", endpoint_url=moto.endpoint_url) as swf:
        history = await swf.get_workflow_execution_history(
            domain=DOMAIN, execution={"workflowId": "customer-42", "runId": run_id}
        )
    print("signals in the SWF execution's history:")
    for event in history["events"]:
        if event["eventType"] == "WorkflowExecutionSignaled":
            attrs = event["workflowExecutionSignaledEventAttributes"]
            print(f"  {attrs['signalName']:<18} {attrs.get('input')}")


def main() -> None:
    import tempfile

    with moto_server() as server, tempfile.TemporaryDirectory() as root:
        asyncio.run(service(server, root))


if __name__ == "__main__":
    main()
