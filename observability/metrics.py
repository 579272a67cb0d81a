"""The Prometheus metrics leadflow exposes, in one place so README's list and the code cannot drift.

Counters live in the process that sees the outcome: the API counts what it accepts and refuses, the worker
counts what its activities did. Nothing here is touched from workflow code (the sandbox must stay pure):
what only the workflow knows (stage changes, SLA outcomes) is counted when the projection activity writes it.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, start_http_server

EVENTS_ACCEPTED = Counter("leadflow_events_accepted_total", "Tracking events accepted (new)", ["route"])
EVENTS_DUPLICATE = Counter("leadflow_events_duplicate_total", "Tracking events already seen (ignored)", ["route"])
EVENTS_REJECTED = Counter(
    "leadflow_events_rejected_total", "Event requests refused with a 4xx (bad input, no key)", ["route", "status"]
)
LEADS_CREATED = Counter("leadflow_leads_created_total", "Leads first written to the read model")
STAGE_CHANGES = Counter("leadflow_stage_changes_total", "Lead stage changes", ["from_stage", "to_stage"])
EMAILS = Counter(
    "leadflow_emails_total",
    "send_email outcomes: sent, already_sent, failed (for good), deferred (relay trouble, retried), suppressed",
    ["kind", "outcome"],
)
SLA = Counter(
    "leadflow_sla_total", "Follow-up SLA outcomes: met, reminded, escalated, breached, cancelled", ["outcome"]
)
ACTIVITY_FAILURES = Counter(
    "leadflow_activity_failures_total", "Activity attempts that raised", ["activity_type", "error_type"]
)
REQUEST_SECONDS = Histogram(
    "leadflow_http_request_duration_seconds",
    "API request latency by route template (never the raw path: lead ids are not label values)",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TEMPORAL_CALLS_IN_FLIGHT = Gauge(
    "leadflow_temporal_calls_in_flight", "Client calls to Temporal not yet answered", ["call"]
)

__all__ = [
    "ACTIVITY_FAILURES",
    "CONTENT_TYPE_LATEST",
    "EMAILS",
    "EVENTS_ACCEPTED",
    "EVENTS_DUPLICATE",
    "EVENTS_REJECTED",
    "LEADS_CREATED",
    "REQUEST_SECONDS",
    "SLA",
    "STAGE_CHANGES",
    "TEMPORAL_CALLS_IN_FLIGHT",
    "generate_latest",
    "start_http_server",
]
