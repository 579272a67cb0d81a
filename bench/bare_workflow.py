"""The bare-engine baseline: a workflow that only counts the signals it receives."""

from temporalio import workflow


@workflow.defn
class BareWorkflow:
    def __init__(self) -> None:
        self.count = 0

    @workflow.signal
    def hit(self, n: int) -> None:
        self.count += n

    @workflow.query
    def seen(self) -> int:
        return self.count

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


async def serve(address: str, task_queue: str) -> None:
    """Run the bare workflow's own worker (bench/e2e_bench.py starts it as a process beside leadflow's)."""
    import asyncio
    import signal

    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[BareWorkflow]):
        await stop.wait()


if __name__ == "__main__":
    import argparse
    import asyncio
    import os

    parser = argparse.ArgumentParser(description="the bare engine's worker")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", default="bare-bench")
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue))
    os._exit(0)  # skip teardown: the SDK's native runtime can abort there (temporalio/sdk-python#300)
