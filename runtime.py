"""Wiring shared by the worker and the API: the Temporal client, the store, the active playbook."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.email import EmailActivities, Mailer
from activities.leads import LeadActivities
from activities.rendering import EmailRenderer
from activities.visitors import VisitorActivities
from observability.temporal import ActivityObserver
from observability.tracing import client_interceptors
from privacy.codec import LeadPayloadCodec, lead_data_converter
from privacy.keys import KeyRing, MasterKeys
from rules.playbook import CompiledPlaybook, document_hash, parse_yaml
from rules.playbook import compile_source as compile_playbook
from settings import Settings
from workflows.lead import LeadWorkflow
from workflows.payloads import PlaybookBundle
from workflows.visitor import VisitorWorkflow


def key_ring(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> KeyRing:
    previous = settings.master_key_previous
    masters = MasterKeys(settings.secret("master_key"), [previous.get_secret_value()] if previous is not None else None)
    return KeyRing(sessions, masters, max_cached=settings.key_cache_size, ttl_seconds=settings.key_cache_seconds)


async def connect_temporal(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], runtime: Runtime | None = None
) -> Client:
    """A client whose payloads for lead workflows are sealed with the lead's data key (privacy/codec.py).

    ``runtime``: the worker's, when it exports the SDK's own metrics (observability/telemetry.py)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        tls=settings.temporal_tls,
        data_converter=lead_data_converter(key_ring(settings, sessions)),
        interceptors=client_interceptors(settings),
        runtime=runtime,
    )


def lead_codec(client: Client) -> LeadPayloadCodec | None:
    codec = client.data_converter.payload_codec
    return codec if isinstance(codec, LeadPayloadCodec) else None


def with_lead_codec(client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Client:
    """The same connection with leadflow's codec, for a client made elsewhere (tests, tools)."""
    if lead_codec(client) is not None:
        return client
    config = client.config()
    config["data_converter"] = lead_data_converter(key_ring(settings, sessions))
    return Client(**config)


@dataclass(frozen=True)
class ActivePlaybook:
    bundle: PlaybookBundle
    compiled: CompiledPlaybook


def load_active_playbook(settings: Settings) -> ActivePlaybook:
    """The playbook file, validated against the templates that exist; its version is its content hash."""
    source = parse_yaml(settings.playbook_path.read_text(encoding="utf-8"))
    version = f"file-{document_hash(source.document)[:12]}"
    templates = EmailRenderer(settings.templates_dir).available()
    compiled = compile_playbook(source, version=version, templates=templates)
    return ActivePlaybook(PlaybookBundle(version=version, document=source.document), compiled)


def compile_published(text: str, version: str) -> ActivePlaybook:
    """A stored version (validated when it was published) as the bundle new leads pin."""
    source = parse_yaml(text)
    return ActivePlaybook(
        PlaybookBundle(version=version, document=source.document),
        compile_playbook(source, version=version, strict=False),  # published before a newer limit: still runs
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    # rules/ is pure and deterministic: passing it through lets every run share one compiled playbook.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            # opentelemetry: the tracing interceptor's spans cross the sandbox (only with LEADFLOW_OTEL_ENABLED).
            "rules", "pydantic", "yaml", "re2", "_re2", "opentelemetry"
        )
    )


def build_worker(client: Client, settings: Settings, sessions, **kwargs) -> Worker:  # type: ignore[no-untyped-def]
    # A worker without the codec would fail on every sealed payload: give it one whatever the caller passed.
    client = with_lead_codec(client, settings, sessions)
    emails = EmailActivities(Mailer(settings, sessions, EmailRenderer(settings.templates_dir, settings.default_locale)))
    leads = LeadActivities(sessions)
    # Client interceptors that are worker interceptors too (tracing) apply to the worker by themselves.
    kwargs.setdefault("interceptors", [ActivityObserver(sessions)])
    for name, value in worker_bounds(settings).items():
        kwargs.setdefault(name, value)
    visitors = VisitorActivities(sessions)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[LeadWorkflow, VisitorWorkflow],
        activities=[emails.send_email, leads.project_lead, leads.assign_rep, visitors.forward_visitor_events],
        workflow_runner=workflow_runner(),
        **kwargs,
    )


def worker_bounds(settings: Settings) -> dict[str, Any]:
    """What one worker process takes on at once (README "Operations" explains each)."""
    return {
        "max_cached_workflows": settings.worker_max_cached_workflows,
        "max_concurrent_workflow_tasks": settings.worker_max_concurrent_workflow_tasks,
        "max_concurrent_activities": settings.worker_max_concurrent_activities,
        "max_concurrent_local_activities": settings.worker_max_concurrent_local_activities,
        "max_task_queue_activities_per_second": settings.worker_max_task_queue_activities_per_second,
        "graceful_shutdown_timeout": timedelta(seconds=settings.worker_graceful_shutdown_seconds),
    }
