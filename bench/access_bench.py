"""What access control costs per request on this machine: a stored key's lookup (cached and not), one audit
entry written to SQLite, and one scrypt password check. Prints figures; asserts nothing."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.auth import KeyCache
from rules.access import Role
from store import access, audit
from store.db import make_engine, make_sessionmaker, run_migrations

ROUNDS = 500


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        run_migrations(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            _, key = await access.create_api_key(session, "bench", Role.tracking)
        started = time.perf_counter()
        for _ in range(ROUNDS):
            async with sessions() as session:
                await access.principal_for_key(session, key, datetime.now(UTC))
        lookup = (time.perf_counter() - started) / ROUNDS
        cache = KeyCache()
        async with sessions() as session:
            cache.put(access.hash_token(key), await access.principal_for_key(session, key, datetime.now(UTC)))
        started = time.perf_counter()
        for _ in range(ROUNDS * 100):
            cache.get(access.hash_token(key))
        cached = (time.perf_counter() - started) / (ROUNDS * 100)
        entry = audit.AuditEntry(
            at=datetime.now(UTC), actor_kind="key", actor_id="ak_0", actor_role="tracking", method="POST",
            route="/v1/events", target=None, summary="events[3]", status=202, client_ip="127.0.0.1",
        )  # fmt: skip
        started = time.perf_counter()
        for _ in range(ROUNDS):
            async with sessions() as session:
                await audit.record(session, entry)
        write = (time.perf_counter() - started) / ROUNDS
        started = time.perf_counter()
        stored = access.hash_password("a long enough passphrase")
        for _ in range(5):
            access.password_matches("a long enough passphrase", stored)
        scrypt = (time.perf_counter() - started) / 6
        await engine.dispose()
    print(f"stored key lookup, SQLite:        {lookup * 1e3:7.3f} ms")
    print(f"stored key lookup, cached:        {cached * 1e6:7.3f} µs")
    print(f"audit entry written, SQLite:      {write * 1e3:7.3f} ms")
    print(f"scrypt hash or check (2^14,8,1):  {scrypt * 1e3:7.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
