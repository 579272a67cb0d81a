"""With LEADFLOW_OTEL_ENABLED, one trace runs from the HTTP request through the Temporal client call and
the workflow to its activities (spans captured in memory). Skipped where the otel extra is not installed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from runtime import build_worker, connect_temporal
from settings import Settings
from tests.conftest import TEST_API_KEY, free_port
from tests.test_integration import dev_server

pytest.importorskip("temporalio.contrib.opentelemetry", reason="pip install -e '.[otel]'")
pytest.importorskip("opentelemetry.instrumentation.fastapi", reason="pip install -e '.[otel]'")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.integration
__all__ = ["dev_server"]
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider (set once per process) exports into memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    return EXPORTER


@pytest.fixture
async def traced_stack(
    dev_server: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
            "otel_enabled": True,
        }
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    client = await connect_temporal(settings, sessions)  # with the tracing interceptor: the worker uses it too
    async with build_worker(client, settings, sessions):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            yield http
        server.should_exit = True
        await serving


async def test_one_trace_from_http_request_to_activity(
    spans: InMemorySpanExporter, traced_stack: httpx.AsyncClient
) -> None:
    spans.clear()
    created = await traced_stack.post("/v1/leads", json={"email": "traced@example.com"}, headers={
        "X-API-Key": TEST_API_KEY})  # fmt: skip
    assert created.status_code == 202
    request = None
    for _ in range(200):  # the projection activity runs after the request has been answered
        finished = spans.get_finished_spans()
        request = next((s for s in finished if s.name == "POST /v1/leads" and s.parent is None), None)
        trace_id = request.context.trace_id if request else None
        in_trace = {s.name for s in finished if s.context.trace_id == trace_id}
        if request and "RunActivity:project_lead" in in_trace:
            break
        await asyncio.sleep(0.1)
    assert request is not None, [s.name for s in spans.get_finished_spans()]
    assert {"RunWorkflow:LeadWorkflow", "RunActivity:project_lead"} <= in_trace, in_trace
    assert any(n.startswith(("StartWorkflow", "SignalWithStartWorkflow")) for n in in_trace), in_trace
