"""Bounds password guessing on the pages' login: after ``login_max_failures`` failed sign-ins within
``login_lockout_seconds`` for one user name from one client address, or five times that many from one
address for any names, the login answers 429 with Retry-After until the oldest failure ages out.

Counted per (name, address) rather than per name alone, so a stranger cannot lock a colleague out by
guessing at their name from elsewhere; the per-address cap stops one client trying many names. Kept in
this process's memory (bounded): each API replica counts on its own, which still caps guesses at
replicas x limit per window, and a restart forgets nothing worth keeping.
"""

from __future__ import annotations

import time
from collections import deque

ADDRESS_FACTOR = 5
MAX_TRACKED = 10_000


class LoginThrottle:
    def __init__(self, max_failures: int, window_seconds: float) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and now - failures[0] >= self.window_seconds:
            failures.popleft()
        return failures

    def _limits(self, username: str, address: str) -> list[tuple[str, int]]:
        return [
            (f"user:{username.lower()}@{address}", self.max_failures),
            (f"addr:{address}", self.max_failures * ADDRESS_FACTOR),
        ]

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until this name may be tried again from this address; 0: try now."""
        now = time.monotonic()
        waits = [
            self.window_seconds - (now - failures[0])
            for key, limit in self._limits(username, address)
            if len(failures := self._recent(key, now)) >= limit
        ]
        return max(1, int(max(waits) + 0.999)) if waits else 0

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        if len(self._failures) > MAX_TRACKED:  # a flood of addresses: forget the lot rather than grow
            self._failures.clear()
        for key, limit in self._limits(username, address):
            failures = self._recent(key, now)
            failures.append(now)
            while len(failures) > limit:
                failures.popleft()
            self._failures[key] = failures

    def succeeded(self, username: str, address: str) -> None:
        self._failures.pop(self._limits(username, address)[0][0], None)
