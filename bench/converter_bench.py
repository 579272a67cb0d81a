"""What a new (or evicted) lead costs the worker in payload decoding: a fresh converter per workflow instance.

The worker builds a payload converter for every workflow instance. With temporalio.contrib.pydantic's
per-instance adapter cache each one rebuilds the schemas of LeadStart and the signal types; the shared cache
(payload_converter.py) builds them once per process. Prints µs per new lead instance for both.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from temporalio.contrib.pydantic import PydanticPayloadConverter

from payload_converter import SharedCachePayloadConverter
from rules.model import EventsReceived, LeadUpserted, TrackedEvent
from runtime import load_active_playbook
from settings import Settings
from workflows.payloads import LeadStart

LEADS = 200


def payloads() -> list[tuple[object, type]]:
    playbook = load_active_playbook(Settings())
    now = datetime.now(UTC)
    return [
        (LeadStart("lead-" + "0" * 32, playbook.bundle), LeadStart),
        (LeadUpserted({"email": "ann@example.com", "company": "Acme"}), LeadUpserted),
        (EventsReceived([TrackedEvent("e1", "page_view", now, url="https://example.com/pricing")]), EventsReceived),
    ]


def per_lead_us(converter_class: type) -> float:
    values = payloads()
    encoded = [(converter_class().to_payloads([value])[0], hint) for value, hint in values]
    started = time.perf_counter()
    for _ in range(LEADS):
        converter = converter_class()  # what the worker does for each workflow instance
        for payload, hint in encoded:
            converter.from_payloads([payload], [hint])
    return (time.perf_counter() - started) / LEADS * 1e6


def main() -> None:
    per_instance = per_lead_us(PydanticPayloadConverter)
    shared = per_lead_us(SharedCachePayloadConverter)
    print(f"decode start input + 2 signals for a new lead instance ({LEADS} leads):")
    print(f"  contrib.pydantic, adapters per instance: {per_instance:8.0f} µs per lead")
    print(f"  process-wide adapter cache:              {shared:8.0f} µs per lead  ({per_instance / shared:.0f}x less)")


if __name__ == "__main__":
    main()
