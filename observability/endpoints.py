"""Where the metrics are served: GET /metrics on the API, a small HTTP server in the worker, and the
Temporal SDK's own metrics through its runtime telemetry (a Prometheus endpoint of the SDK's core)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from observability import metrics
from settings import Settings

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    """Prometheus text format. No API key: scrape it on an internal network (README "Operations")."""
    return Response(metrics.generate_latest(), media_type=metrics.CONTENT_TYPE_LATEST)


def start_worker_metrics(settings: Settings) -> None:
    """leadflow's metrics of this worker process on LEADFLOW_WORKER_METRICS_PORT (0: not served)."""
    if settings.worker_metrics_port:
        metrics.start_http_server(settings.worker_metrics_port, addr=settings.metrics_host)


def temporal_runtime(settings: Settings) -> Runtime | None:
    """A runtime exporting the SDK's metrics (schedule-to-start latency, sticky cache, slots) on
    LEADFLOW_TEMPORAL_METRICS_PORT; None keeps the SDK's default runtime (no endpoint)."""
    if not settings.temporal_metrics_port:
        return None
    bind = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))
