"""What engagement tracking costs per email and per hit: the post-render transform on a typical nurture
email (10 links + pixel), and verifying a link token (what every click and open pays before the redirect).

    .venv/bin/python bench/tracking_bench.py [--seconds 1.0]

Figures: median of 5 timed batches, one core, CPU microseconds per call (process time: the machine may be shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activities.link_tracking import add_open_pixel, rewrite_links
from activities.tracking_tokens import TrackedSend, sign, tracking_key, verify

KEY = tracking_key("bench-id-key")
BASE = "https://leads.example.com"
SEND = TrackedSend("lead-" + "a" * 32 + ":nurture:7", "case_study", "split=b")
PARAGRAPH = '<p>Read <a href="https://example.com/case/{n}?utm_source=mail&amp;utm_medium=nurture">case {n}</a>.</p>'
HTML = (
    "<html><body>"
    + "".join(PARAGRAPH.format(n=n) + "<p>" + "text " * 80 + "</p>" for n in range(10))
    + "</body></html>"
)
TOKEN = sign(SEND, KEY, "https://example.com/case/3?utm_source=mail&utm_medium=nurture")


def per_call(fn: Callable[[], object], seconds: float) -> float:
    batches = []
    for _ in range(5):
        n, start = 0, time.process_time()
        while time.process_time() - start < seconds / 5:
            fn()
            n += 1
        batches.append((time.process_time() - start) / n * 1e6)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    seconds = parser.parse_args().seconds
    transform = per_call(lambda: add_open_pixel(rewrite_links(HTML, SEND, KEY, BASE), SEND, KEY, BASE), seconds)
    print(f"tracking transform, {len(HTML)} chars, 10 links + pixel: {transform:8.1f} µs per email")
    check = per_call(lambda: verify(TOKEN, KEY), seconds)
    print(f"verify a link token ({len(TOKEN)} chars):                 {check:8.1f} µs")


if __name__ == "__main__":
    main()
