"""Planning speed of a playbook migration per lead (rules/migration.py), the work each lead's workflow does at
its safe point (and each dry-run query), with and without the score recomputation.

Leads are built with the real ``decide`` on the default playbook (a lead, then N events over a few days),
then planned to a version with one journey step renamed (mapped) and different download points.

    .venv/bin/python bench/migration_bench.py [--leads 500] [--events 20]

Figures: median of 5 timed passes over all leads, one core; microseconds per lead.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rules import decide
from rules.migration import MigrationOptions, plan_lead_migration
from rules.model import EventsReceived, LeadState, LeadUpserted, TrackedEvent
from rules.playbook import compiled_from_document

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
TYPES = ["page_view", "email_open", "email_click", "download", "webinar_attended"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    old = compiled_from_document(doc, "v1")
    new_doc = copy.deepcopy(doc)
    new_doc["journeys"][0]["steps"][2]["id"] = "case_study_2026"
    new_doc["scoring"]["rules"][0]["points"] = 25
    new = compiled_from_document(new_doc, "v2")
    step_map = {"welcome_nurture/case_study": "welcome_nurture/case_study_2026"}
    leads: list[tuple[LeadState, list[TrackedEvent]]] = []
    for i in range(args.leads):
        state = LeadState(lead_id=f"lead-{i:032x}")
        decide(state, LeadUpserted({"email": f"p{i}@example.com", "title": "Engineer", "company_size": 50}), T0, old)
        events = [
            TrackedEvent(f"e{i}-{n}", TYPES[(i + n) % len(TYPES)], T0 + timedelta(hours=n), "https://example.com/x")
            for n in range(args.events)
        ]
        for event in events:
            decide(state, EventsReceived([event]), event.at, old)
        leads.append((state, events))
    now = T0 + timedelta(hours=args.events + 1)
    print(f"{args.leads} leads, {args.events} events each, Python {sys.version.split()[0]}")
    for recompute in (False, True):
        options = MigrationOptions("v2", step_map, recompute)
        passes = []
        for _ in range(5):
            started = time.perf_counter()
            for state, events in leads:
                result = plan_lead_migration(state, old, new, options, now, events)
                assert result.plan.outcome == "migrate", result.plan.reason
            passes.append((time.perf_counter() - started) / len(leads))
        label = "with score recomputation" if recompute else "positions, timers, reaction"
        print(f"  {label:30s} {statistics.median(passes) * 1e6:8.0f} µs per lead")


if __name__ == "__main__":
    main()
