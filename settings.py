"""Every setting leadflow reads, in one place (pydantic-settings).

Names use the ``LEADFLOW_`` prefix, except the conventions shared with other tools:
``DATABASE_URL`` and the Temporal client's ``TEMPORAL_ADDRESS`` / ``TEMPORAL_NAMESPACE`` /
``TEMPORAL_API_KEY`` / ``TEMPORAL_TLS`` / ``TEMPORAL_TLS_*``. README.md documents each one.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", extra="ignore", populate_by_name=True)

    # Where make run keeps everything it creates (Temporal's SQLite file, the store, keys, sink mail).
    data_dir: Path = ROOT / ".data"

    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "LEADFLOW_DATABASE_URL"))

    temporal_address: str = Field(
        default="localhost:7233", validation_alias=AliasChoices("TEMPORAL_ADDRESS", "LEADFLOW_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(
        default="default", validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "LEADFLOW_TEMPORAL_NAMESPACE")
    )
    temporal_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_API_KEY", "LEADFLOW_TEMPORAL_API_KEY")
    )
    # TLS to the frontend. Unset: on when an API key or a client certificate is configured (Temporal Cloud),
    # off otherwise (a local dev server). The variable names are the Temporal CLI's and SDKs' own.
    temporal_tls: bool | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_TLS", "LEADFLOW_TEMPORAL_TLS")
    )
    # mTLS (Temporal Cloud's certificate auth, or a self-hosted cluster): the client's certificate and key (PEM).
    temporal_tls_client_cert_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_TLS_CLIENT_CERT_PATH", "LEADFLOW_TEMPORAL_TLS_CLIENT_CERT_PATH"),
    )
    temporal_tls_client_key_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_TLS_CLIENT_KEY_PATH", "LEADFLOW_TEMPORAL_TLS_CLIENT_KEY_PATH"),
    )
    # A private CA that signed the frontend's certificate (unset: the system's roots), and the name to expect.
    temporal_tls_server_ca_cert_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "LEADFLOW_TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
    )
    temporal_tls_server_name: str | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_TLS_SERVER_NAME", "LEADFLOW_TEMPORAL_TLS_SERVER_NAME")
    )
    task_queue: str = "leadflow"
    # Off only for a Temporal server without leadflow's custom search attributes registered.
    search_attributes: bool = True

    # Admin API key for every write endpoint. make run generates one under .data/ when unset.
    api_key: SecretStr | None = None
    # Secret for the keyed hash that turns a normalized email into a lead id (no personal data in ids).
    id_key: SecretStr | None = None
    # Wraps every lead's data key (payload encryption in Temporal; erasure destroys the data key).
    # make run generates one under .data/ when unset. Losing it makes every lead's history unreadable.
    master_key: SecretStr | None = None
    # During a master key rotation only: the old key, still accepted for unwrapping (see README).
    master_key_previous: SecretStr | None = None
    # Unwrapped data keys cached per process: how many, and for how long (an erased lead's key may
    # survive this long in the memory of processes other than the one that erased it).
    key_cache_size: int = 10_000
    key_cache_seconds: float = 300.0

    playbook_path: Path = ROOT / "playbooks" / "default.yaml"
    templates_dir: Path = ROOT / "templates"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    # A CA bundle (PEM) to trust for a relay with a private or self-signed certificate; unset: the system's.
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = 10.0
    # Unicode before the @ (用户@example.com) needs a relay with SMTPUTF8: true accepts such addresses and
    # sends them with SMTPUTF8; false (the default) refuses them at the API with a 422.
    smtp_utf8: bool = False
    mail_from: str = "leadflow <noreply@leadflow.localhost>"
    # Domain used in deterministic Message-IDs.
    message_id_domain: str = "leadflow.localhost"

    # Sending to real people (README "Sending to real people"). Every nurture email's footer names the
    # sender and its postal address (Japan's Act on Specified Electronic Mail, CAN-SPAM); an empty name
    # falls back to mail_from's display name.
    sender_name: str = ""
    sender_postal_address: str = ""
    # Where recipients reach the sender with questions or complaints (email, phone or URL; Japan requires one).
    sender_contact: str = ""
    # Where people reach this API from the internet: unsubscribe links are built on it. HTTPS in
    # production (Gmail and Yahoo ignore a one-click List-Unsubscribe that is not https).
    public_base_url: str = "http://127.0.0.1:8000"
    # A mailbox also offered in List-Unsubscribe (mailto:); leadflow does not read it: whoever does must
    # unsubscribe the sender (POST /v1/suppressions or the lead's consent endpoint).
    unsubscribe_mailto: str | None = None
    # HMAC key signing unsubscribe tokens; make run generates one under .data/ when unset. Rotate by moving
    # the old key to unsubscribe_keys_previous (comma-separated): links in old mail keep working.
    unsubscribe_key: SecretStr | None = None
    unsubscribe_keys_previous: SecretStr | None = None
    # Language of mail whose lead and playbook name none (rules/locale.py); en and ja are shipped.
    default_locale: str = Field(default="en", pattern=r"^[a-z]{2}$")
    # Engagement tracking in nurture mail (README "Engagement tracking"): false turns it off everywhere,
    # whatever the playbook's email.tracking says.
    track_opens: bool = True
    track_clicks: bool = True
    # Opens (and clicks on one link) of one send within this window count once: mail-client prefetchers
    # (Apple Mail Privacy Protection, image proxies) and link scanners fetch within seconds of delivery.
    tracking_dedupe_seconds: int = Field(default=3600, ge=1)
    # POST /v1/email-events: the relay signs with this secret (X-Leadflow-Signature) instead of sending
    # the API key; signatures older or newer than the tolerance are refused (replay window). The same
    # tolerance bounds the signed webhooks of /v1/webhooks/{source}.
    webhook_secret: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=1)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Score-only changes reach the read model at most this often per lead (stage, owner and SLA
    # changes are projected at once); live state is always available from GET /v1/leads/{id}.
    projection_delay_seconds: int = 30
    # APScheduler in the API process: the managers' daily digest of overdue follow-ups (crontab syntax).
    scheduler_enabled: bool = True
    digest_cron: str = "0 8 * * mon-fri"
    digest_timezone: str = "UTC"
    # Backpressure: Temporal calls one API process keeps in flight; past this, requests get 503 + Retry-After
    # at once instead of queueing without bound (the dev server is the bottleneck on small machines).
    max_inflight_temporal_calls: int = 256
    # Reports (GET /v1/reports/...): money figures in this currency (costs and deals in others are
    # counted apart, never converted); lifetime value per customer for LTV:CAC (unset: the average won
    # amount); months a won amount pays for, for the payback period. Each can be overridden per report.
    report_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    lifetime_value: Decimal | None = Field(default=None, ge=0)
    contract_months: int = Field(default=12, ge=1, le=600)
    # The 70-20-10 mix report: source -> core | growth | experiment (JSON; ?core=&growth=&experiment= add to it).
    source_tiers: dict[str, Literal["core", "growth", "experiment"]] = Field(default_factory=dict)

    # Operations (README "Operations"). Logs: "text" for a terminal, "json" (one object a line) for production.
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # GET /metrics on the API port, without an API key: scrape it on an internal network, block it at the edge.
    api_metrics: bool = True
    # The worker's own Prometheus endpoint, and the Temporal SDK's (its runtime telemetry); 0 = off.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    temporal_metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # OpenTelemetry tracing API -> Temporal -> activities; needs `pip install -e '.[otel]'`.
    otel_enabled: bool = False
    # Worker bounds. Sticky cache: workflows kept in memory between tasks (an evicted lead replays its
    # history on its next task); the concurrency limits cap what one worker process takes on at once.
    worker_max_cached_workflows: int = Field(default=1000, ge=0)
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=2)
    worker_max_concurrent_activities: int = Field(default=100, ge=1)
    worker_max_concurrent_local_activities: int = Field(default=100, ge=1)
    # Long polls each worker process keeps open on the task queue, per task kind (the SDK's default, 5): enough
    # for the concurrency limits above; raise them only when schedule-to-start latency grows with idle slots.
    worker_workflow_task_pollers: int = Field(default=5, ge=2)
    worker_activity_task_pollers: int = Field(default=5, ge=1)
    # Activities per second across the task queue (all workers), None = unlimited: protects SMTP and the store.
    worker_max_task_queue_activities_per_second: float | None = Field(default=None, gt=0)
    # On SIGTERM, how long running activities get to finish before they are cancelled.
    worker_graceful_shutdown_seconds: float = Field(default=30.0, ge=0)

    # The pages' login (README "Roles, keys and the audit log"): a session lasts this long; its cookie is
    # Secure when this says so, or (unset) when public_base_url is https.
    session_hours: float = Field(default=12.0, gt=0, le=24 * 90)
    session_cookie_secure: bool | None = None
    # Password guessing (api/login_throttle.py): this many failed sign-ins for one name from one address
    # (five times as many from one address) within the lockout window, and the login answers 429 until it ends.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: float = Field(default=900.0, gt=0)

    # Segment-compatible tracking: where an identify (or a track) names the person's email, in order:
    # "traits" (traits.email, context.traits.email) and "user_id" (a userId that is an email).
    segment_email_from: list[Literal["traits", "user_id"]] = ["traits", "user_id"]
    # An anonymous visitor's events wait this long (since their last event) for an identify, then go.
    visitor_retention_days: float = 30.0

    @property
    def secure_cookies(self) -> bool:
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.public_base_url.startswith("https://")

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'leadflow.db'}"

    def unsubscribe_keys(self) -> list[str]:
        """The key that signs new unsubscribe links, then the previous ones still accepted."""
        previous = self.unsubscribe_keys_previous.get_secret_value() if self.unsubscribe_keys_previous else ""
        return [self.secret("unsubscribe_key"), *(k.strip() for k in previous.split(",") if k.strip())]

    def secret(self, name: str) -> str:
        """api_key / id_key / master_key / unsubscribe_key / webhook_secret: else the file make run writes."""
        value: SecretStr | None = getattr(self, name)
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        path = self.data_dir / name
        if path.exists():
            return path.read_text().strip()
        raise RuntimeError(
            f"LEADFLOW_{name.upper()} is not set and {path} does not exist: "
            "set it, or start the stack once with `make run` to generate it."
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
