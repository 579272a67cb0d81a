"""Wiring shared by the worker and the API: the Temporal client, the store, the active playbook."""

from __future__ import annotations

import importlib.util
import py_compile
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.email import EmailActivities, Mailer
from activities.lead_merge import LeadMergeActivities
from activities.leads import LeadActivities
from activities.migration import MigrationActivities
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
from workflows.playbook_migration import PlaybookMigrationWorkflow
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
        tls=temporal_tls(settings),
        data_converter=lead_data_converter(key_ring(settings, sessions)),
        interceptors=client_interceptors(settings),
        runtime=runtime,
    )


# ---------------------------------------------------------------- TLS to Temporal
# Plain for a local dev server; TLS for Temporal Cloud (API key, or mTLS with a client certificate) and for a
# self-hosted cluster behind TLS (a private CA, a server name). Variables are the Temporal CLI's (TEMPORAL_TLS_*).


class TemporalTlsProblem(ValueError):
    """The TLS settings contradict each other or name a file that cannot be read."""


def temporal_tls(settings: Settings) -> TLSConfig | bool:
    """``tls=`` for ``Client.connect``: False, True (system roots, no client certificate) or a TLSConfig."""
    cert, key = settings.temporal_tls_client_cert_path, settings.temporal_tls_client_key_path
    ca, name = settings.temporal_tls_server_ca_cert_path, settings.temporal_tls_server_name
    if (cert is None) != (key is None):
        raise TemporalTlsProblem(
            "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together (mTLS needs both): set "
            "both, or neither"
        )
    details = any(value is not None for value in (cert, ca, name))
    if settings.temporal_tls is False:
        if details:
            raise TemporalTlsProblem(
                "TEMPORAL_TLS=false, yet TEMPORAL_TLS_* names certificates or a server name: remove them, or "
                "drop TEMPORAL_TLS=false"
            )
        return False
    # Temporal's own rule: an API key (or a client certificate) turns TLS on unless it is explicitly off.
    wanted = settings.temporal_tls or settings.temporal_api_key is not None or details
    if not wanted:
        return False
    if not details:
        return True
    return TLSConfig(
        server_root_ca_cert=_read(ca, "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        domain=name,
        client_cert=_read(cert, "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        client_private_key=_read(key, "TEMPORAL_TLS_CLIENT_KEY_PATH"),
    )


def _read(path: Path | None, variable: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise TemporalTlsProblem(f"{variable}={path} cannot be read ({exc.strerror}): fix the path") from exc


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
            "rules",
            "pydantic",
            "yaml",
            "re2",
            "_re2",
            "opentelemetry",
        )
    )


def write_workflow_bytecode(*classes: type) -> None:
    """The sandbox imports a workflow's module afresh for every workflow instance it creates (each new or
    evicted lead). Without a bytecode cache beside the source (PYTHONDONTWRITEBYTECODE, usual in container
    images) every such import compiled the module again: write the cache once, where it can be written."""
    for cls in classes:
        source = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        try:
            py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True)
        except (OSError, py_compile.PyCompileError):
            pass  # a read-only install: the imports compile as before


def build_worker(client: Client, settings: Settings, sessions, **kwargs) -> Worker:  # type: ignore[no-untyped-def]
    # A worker without the codec would fail on every sealed payload: give it one whatever the caller passed.
    client = with_lead_codec(client, settings, sessions)
    workflows = [LeadWorkflow, VisitorWorkflow, PlaybookMigrationWorkflow]
    write_workflow_bytecode(*workflows)
    emails = EmailActivities(Mailer(settings, sessions, EmailRenderer(settings.templates_dir, settings.default_locale)))
    leads = LeadActivities(sessions)
    # Client interceptors that are worker interceptors too (tracing) apply to the worker by themselves.
    kwargs.setdefault("interceptors", [ActivityObserver(sessions)])
    for name, value in worker_bounds(settings).items():
        kwargs.setdefault(name, value)
    visitors = VisitorActivities(sessions)
    merges = LeadMergeActivities(sessions)
    migrations = MigrationActivities(client, sessions)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=workflows,
        activities=[
            emails.send_email,
            leads.project_lead,
            leads.assign_rep,
            visitors.forward_visitor_events,
            merges.release_merged_lead,
            merges.record_lead_alias,
            migrations.leads_to_migrate,
            migrations.migrate_lead,
            leads.stored_lead_events,
        ],
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
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.worker_workflow_task_pollers),
        "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.worker_activity_task_pollers),
        "max_task_queue_activities_per_second": settings.worker_max_task_queue_activities_per_second,
        "graceful_shutdown_timeout": timedelta(seconds=settings.worker_graceful_shutdown_seconds),
    }
