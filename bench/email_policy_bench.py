"""What the email policy costs on the hot path: placing one nurture send (consent, window, caps), and a
whole lead's first decide() with and without a policy.

    .venv/bin/python bench/email_policy_bench.py [--seconds 1.0]

Figures: median of 5 timed batches, one core, CPU microseconds per call (process time: the machine may be shared).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rules import decide, load_playbook_text
from rules.consent import nurture_blocked
from rules.model import ConsentRecord, LeadState, LeadUpserted
from rules.playbook import CompiledPlaybook, EmailPolicy, QuietHours
from rules.send_window import lead_zone, next_send_moment

NOW = dt.datetime(2026, 11, 20, 13, 30, tzinfo=dt.UTC)  # Friday 22:30 in Tokyo: quiet hours, then the weekend
POLICY = EmailPolicy(
    require_opt_in=True,
    quiet_hours=QuietHours(start="21:00", end="08:00"),
    weekdays=["mon", "tue", "wed", "thu", "fri"],
    max_per_day=2,
    max_per_week=4,
)
SENT = [NOW - dt.timedelta(hours=6 * i) for i in range(1, 21)]
RECORDS = [ConsentRecord("opted_in", "form", NOW - dt.timedelta(days=30))]
LEAD = {"email": "sato@example.jp", "first_name": "Taro", "title": "部長", "company_size": 800, "country": "JP"}


def per_call(fn: Callable[[], object], seconds: float) -> float:
    calls = 1
    while True:
        start = time.process_time()
        for _ in range(calls):
            fn()
        if time.process_time() - start > seconds / 10:
            break
        calls *= 2
    batches = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls):
            fn()
        batches.append((time.process_time() - start) / calls)
    return statistics.median(batches) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    plain = load_playbook_text(yaml.safe_dump(doc, allow_unicode=True))
    doc["email"] = POLICY.model_dump(exclude_none=True)
    strict = load_playbook_text(yaml.safe_dump(doc, allow_unicode=True))

    def place() -> tuple[dt.datetime, str | None]:
        assert nurture_blocked(RECORDS, POLICY.require_opt_in) is None
        return next_send_moment(NOW, SENT, POLICY, lead_zone(LEAD, POLICY))

    def first_decide(pb: CompiledPlaybook) -> Callable[[], object]:
        consent = ConsentRecord("opted_in", "form", NOW)
        return lambda: decide(LeadState("lead-1"), LeadUpserted(dict(LEAD), consent), NOW, pb)

    why = place()[1]
    print(f"placing a nurture send (consent + window + caps, 20 past sends): {per_call(place, args.seconds):.1f} µs")
    print(f"  -> {why}")
    print(f"new lead, first decide(), no email policy:   {per_call(first_decide(plain), args.seconds):.1f} µs")
    print(f"new lead, first decide(), strict policy:     {per_call(first_decide(strict), args.seconds):.1f} µs")


if __name__ == "__main__":
    main()
