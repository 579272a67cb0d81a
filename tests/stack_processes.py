"""leadflow's own processes (``python worker.py``, the API under uvicorn) as real subprocesses for tests that kill
them: configured from a test's ``Settings`` through the environment, exactly as an operator would run them.

``WorkerProcess`` is ready once Temporal sees *its* poller (the SDK's identity is ``<pid>@<host>``): a killed
worker's poller stays listed for minutes, so "somebody polls" would say ready too early after a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from settings import ROOT, Settings

STOP_SECONDS = 15.0


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a leadflow process read ``settings`` (plus ``extra`` variables)."""
    return os.environ | {
        "LEADFLOW_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "LEADFLOW_TASK_QUEUE": settings.task_queue,
        "LEADFLOW_API_KEY": settings.secret("api_key"),
        "LEADFLOW_ID_KEY": settings.secret("id_key"),
        "LEADFLOW_MASTER_KEY": settings.secret("master_key"),
        "LEADFLOW_UNSUBSCRIBE_KEY": settings.secret("unsubscribe_key"),
        "LEADFLOW_PLAYBOOK_PATH": str(settings.playbook_path),
        "LEADFLOW_TEMPLATES_DIR": str(settings.templates_dir),
        "LEADFLOW_PROJECTION_DELAY_SECONDS": str(settings.projection_delay_seconds),
        "LEADFLOW_SCHEDULER_ENABLED": "false",
        "LEADFLOW_SMTP_HOST": settings.smtp_host,
        "LEADFLOW_SMTP_PORT": str(settings.smtp_port),
        **extra,
    }


class _Process:
    """A child process whose stderr goes to a file (a pipe nobody reads would block a chatty child)."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.process.args!r} exited with {self.process.returncode}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, in-flight activities abandoned mid-way."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_SECONDS)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()


class WorkerProcess(_Process):
    """``python worker.py`` for ``settings``; its log is appended to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, **extra_env: str) -> None:
        env = process_env(settings, LEADFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS="2", **extra_env)
        super().__init__([sys.executable, "worker.py"], env, log_path)
        self.task_queue = settings.task_queue

    async def polling(self, client: Client, seconds: float = 60.0) -> None:
        """Return once this process polls its task queue (workflow and activity tasks)."""
        identity = f"{self.pid}@"
        deadline = asyncio.get_running_loop().time() + seconds
        waiting_for = {TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY}
        while asyncio.get_running_loop().time() < deadline:
            self.check_alive()
            for kind in list(waiting_for):
                described = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=client.namespace, task_queue=TaskQueue(name=self.task_queue), task_queue_type=kind
                    )
                )
                if any(p.identity.startswith(identity) for p in described.pollers):
                    waiting_for.discard(kind)
            if not waiting_for:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker {self.pid} never polled {self.task_queue!r}; log: {self.log_path}")


class ApiProcess(_Process):
    """``python -m uvicorn api.main:app`` on ``port``, configured like the test's settings."""

    def __init__(self, settings: Settings, port: int, log_path: Path | None = None) -> None:
        self.port = port
        command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
        log = log_path or settings.data_dir / f"api-{port}.log"
        super().__init__(command, process_env(settings), log)

    async def ready(self, http: httpx.AsyncClient) -> None:
        for _ in range(300):
            self.check_alive()
            try:
                if (await http.get(f"http://127.0.0.1:{self.port}/health/live")).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("the API process never answered")
