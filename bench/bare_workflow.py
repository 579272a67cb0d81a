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
