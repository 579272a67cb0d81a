"""The process that runs LeadWorkflows and their activities. Several workers on one task queue scale out."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from activities.unsubscribe import sending_gaps
from observability.endpoints import start_worker_metrics, temporal_runtime
from observability.logging import configure_logging
from runtime import build_worker, connect_temporal
from settings import get_settings
from store.db import make_engine, make_sessionmaker


async def main() -> None:
    settings = get_settings()
    configure_logging("worker", settings.log_format, settings.log_level)
    start_worker_metrics(settings)
    engine = make_engine(settings.resolved_database_url())
    sessions = make_sessionmaker(engine)
    client = await connect_temporal(settings, sessions, runtime=temporal_runtime(settings))
    worker = build_worker(client, settings, sessions)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for gap in sending_gaps(settings):  # nurture still goes out: the operator decides, but is told
        logging.warning("sending to real people: %s", gap)
    logging.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
        logging.info("shutting down: finishing in-flight activities")
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
    # Skip interpreter teardown after a clean shutdown: the SDK's native runtime can abort there
    # (temporalio/sdk-python#300), turning a graceful stop into a crash report.
    logging.shutdown()
    os._exit(0)
