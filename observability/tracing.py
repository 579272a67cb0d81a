"""Optional OpenTelemetry tracing: HTTP request -> Temporal client call -> workflow -> activities.

Off by default (``LEADFLOW_OTEL_ENABLED``). It needs the ``otel`` extra; asked for without it, the process
refuses to start with a message that says what to install, rather than running silently untraced.
Spans go to whatever TracerProvider the process has; when none is set, one exporting over OTLP is made
(configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import client

from observability.temporal import InflightCalls

if TYPE_CHECKING:
    from fastapi import FastAPI

    from settings import Settings

MISSING = (
    "LEADFLOW_OTEL_ENABLED is true but OpenTelemetry is not installed ({error}): "
    "pip install -e '.[otel]', or set LEADFLOW_OTEL_ENABLED=false"
)


class TracingUnavailable(RuntimeError):
    """Tracing was asked for and cannot be provided."""


def client_interceptors(settings: Settings) -> list[client.Interceptor]:
    interceptors: list[client.Interceptor] = [InflightCalls()]
    if settings.otel_enabled:
        try:
            from temporalio.contrib.opentelemetry import TracingInterceptor
        except ImportError as exc:
            raise TracingUnavailable(MISSING.format(error=exc)) from exc
        _ensure_provider()
        interceptors.append(TracingInterceptor())
    return interceptors


def instrument_api(app: FastAPI, settings: Settings) -> None:
    """Server spans for every request (the parent of the Temporal client spans)."""
    if not settings.otel_enabled:
        return
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError as exc:
        raise TracingUnavailable(MISSING.format(error=exc)) from exc
    _ensure_provider()
    # No URL in span names or attributes beyond the route template: paths hold lead ids, queries may hold addresses.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/metrics,/health/")


def _ensure_provider() -> None:
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # nobody configured one yet
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
        exporter = _otlp_exporter()
        if exporter is not None:
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)


def _otlp_exporter() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        return None
    return OTLPSpanExporter()
