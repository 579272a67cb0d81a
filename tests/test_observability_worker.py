"""The worker's bounds come from settings; its metrics and the SDK's are served where settings say;
tracing asked for without its packages stops the process with a message that says what to install."""

from __future__ import annotations

import asyncio
import sys
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PollerBehaviorSimpleMaximum

from api.main import create_app
from observability import endpoints
from observability.tracing import TracingUnavailable, client_interceptors
from runtime import build_worker, connect_temporal
from settings import Settings
from tests.conftest import free_port
from tests.test_integration import dev_server

pytestmark = pytest.mark.integration
__all__ = ["dev_server"]


@pytest.fixture
def on_dev_server(dev_server: WorkflowEnvironment, settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
        }
    )


async def test_worker_bounds_are_settings(
    dev_server: WorkflowEnvironment, on_dev_server: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bounded = on_dev_server.model_copy(
        update={
            "worker_max_cached_workflows": 123,
            "worker_max_concurrent_activities": 7,
            "worker_max_concurrent_workflow_tasks": 9,
            "worker_max_concurrent_local_activities": 5,
            "worker_max_task_queue_activities_per_second": 50.0,
            "worker_workflow_task_pollers": 3,
            "worker_activity_task_pollers": 2,
        }
    )
    config = build_worker(dev_server.client, bounded, sessions).config()
    assert config["max_cached_workflows"] == 123
    assert config["max_concurrent_activities"] == 7
    assert config["max_concurrent_workflow_tasks"] == 9
    assert config["max_concurrent_local_activities"] == 5
    assert config["max_task_queue_activities_per_second"] == 50.0
    assert config["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(3)
    assert config["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(2)
    # One worker per task queue and client: the defaults on a queue of their own.
    other_queue = on_dev_server.model_copy(update={"task_queue": f"{on_dev_server.task_queue}-defaults"})
    defaults = build_worker(dev_server.client, other_queue, sessions).config()
    assert defaults["max_cached_workflows"] == Settings.model_fields["worker_max_cached_workflows"].default


async def get_until(url: str, needle: str, seconds: float = 15.0) -> str:
    deadline = asyncio.get_running_loop().time() + seconds
    text = ""
    async with httpx.AsyncClient(timeout=5) as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                text = (await http.get(url)).text
                if needle in text:
                    return text
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared at {url}; last answer: {text[:500]!r}")


async def test_worker_serves_leadflow_and_sdk_metrics(
    on_dev_server: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ours, sdk = free_port(), free_port()
    settings = on_dev_server.model_copy(update={"worker_metrics_port": ours, "temporal_metrics_port": sdk})
    endpoints.start_worker_metrics(settings)
    await get_until(f"http://127.0.0.1:{ours}/metrics", "leadflow_activity_failures_total")
    client = await connect_temporal(settings, sessions, runtime=endpoints.temporal_runtime(settings))
    async with build_worker(client, settings, sessions):
        # The SDK's core exports its own metrics: pollers, slots, sticky cache, request latencies.
        text = await get_until(f"http://127.0.0.1:{sdk}/metrics", "temporal_worker_task_slots_available")
    assert "temporal_num_pollers" in text or "temporal_request" in text


def test_no_endpoint_when_ports_are_zero(settings: Settings) -> None:
    telemetry = endpoints.temporal_telemetry(settings)
    assert telemetry.metrics is None
    # The core's own log lines still go through Python logging (JSON, masked), metrics port or not.
    assert telemetry.logging and telemetry.logging.forwarding
    assert telemetry.logging.forwarding.logger.name == "temporalio.core"
    endpoints.start_worker_metrics(settings)  # port 0: nothing is started, nothing raises


def test_metrics_route_can_be_left_out(settings: Settings) -> None:
    with TestClient(create_app(settings)) as http:
        served = http.get("/metrics")
    assert served.status_code == 200 and "leadflow_http_request_duration_seconds" in served.text
    with TestClient(create_app(settings.model_copy(update={"api_metrics": False}))) as http:
        assert http.get("/metrics").status_code == 404


def test_tracing_without_its_packages_is_a_clear_startup_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "temporalio.contrib.opentelemetry", None)  # as if not installed
    traced = settings.model_copy(update={"otel_enabled": True})
    with pytest.raises(TracingUnavailable, match=r"pip install -e '\.\[otel\]'"):
        client_interceptors(traced)
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.fastapi", None)
    with pytest.raises(TracingUnavailable, match="LEADFLOW_OTEL_ENABLED"):
        create_app(traced)
    assert len(client_interceptors(settings)) == 1  # off by default: only the in-flight counter


async def test_connect_fails_before_serving_when_tracing_is_unavailable(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "temporalio.contrib.opentelemetry", None)
    with pytest.raises(TracingUnavailable):
        await connect_temporal(settings.model_copy(update={"otel_enabled": True}), sessions)
