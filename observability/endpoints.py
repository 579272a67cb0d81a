"""Where the metrics are served: GET /metrics on the API, a small HTTP server in the worker, and the
Temporal SDK's own metrics through its runtime telemetry (a Prometheus endpoint of the SDK's core)."""

from __future__ import annotations

import dataclasses
import logging

from fastapi import APIRouter, Response
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from api.roles import public
from observability import metrics
from settings import Settings

# No key: scrape it on an internal network, block it at the edge (README "Operations").
router = APIRouter(tags=["operations"], dependencies=[public("Prometheus scrapes it without a key")])


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    """Prometheus text format. No API key: scrape it on an internal network (README "Operations")."""
    return Response(metrics.generate_latest(), media_type=metrics.CONTENT_TYPE_LATEST)


def start_worker_metrics(settings: Settings) -> None:
    """leadflow's metrics of this worker process on LEADFLOW_WORKER_METRICS_PORT (0: not served)."""
    if settings.worker_metrics_port:
        metrics.start_http_server(settings.worker_metrics_port, addr=settings.metrics_host)


def temporal_runtime(settings: Settings) -> Runtime:
    return Runtime(telemetry=temporal_telemetry(settings))


def temporal_telemetry(settings: Settings) -> TelemetryConfig:
    """For the worker's SDK runtime: the core's own log lines go through Python logging (so they are JSON and
    masked like ours, instead of the core's console format on stdout), and its metrics (schedule-to-start
    latency, sticky cache, slots) are served on LEADFLOW_TEMPORAL_METRICS_PORT when that is not 0."""
    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    telemetry = TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter("WARN", "ERROR"), forwarding=forwarding))
    if settings.temporal_metrics_port:
        bind = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
        telemetry = dataclasses.replace(telemetry, metrics=PrometheusConfig(bind_address=bind))
    return telemetry
