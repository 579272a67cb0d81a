"""Cost of sealing lead payloads (privacy/codec.py): per payload, cached key vs a store round trip.

Prints microseconds per encode and decode of a lead's start input (the playbook travels in it, ~5 KB)
and of a small signal, with the data key cached, and the cost of a cache miss on a SQLite store.

    .venv/bin/python bench/codec_bench.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from temporalio.converter import WorkflowSerializationContext

from payload_converter import data_converter
from privacy.codec import LeadPayloadCodec
from privacy.keys import KeyRing, MasterKeys
from rules.model import EventsReceived, TrackedEvent
from runtime import load_active_playbook
from settings import Settings
from store.db import make_engine, make_sessionmaker, run_migrations
from workflows.payloads import LeadStart


def context(lead: int) -> WorkflowSerializationContext:
    return WorkflowSerializationContext(namespace="default", workflow_id=f"lead-{lead:032x}")


async def per_payload(codec: LeadPayloadCodec, payload, rounds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    [sealed] = await codec.encode([payload])
    start = time.perf_counter()
    for _ in range(rounds):
        await codec.encode([payload])
    encode = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for _ in range(rounds):
        await codec.decode([sealed])
    return encode, (time.perf_counter() - start) / rounds


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        run_migrations(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        keys = KeyRing(sessions, MasterKeys("bench-master"))
        playbook = load_active_playbook(Settings(data_dir=Path(tmp)))
        converter = data_converter.payload_converter
        start_payload = converter.to_payload(LeadStart(f"lead-{0:032x}", playbook.bundle))
        now = datetime.now(UTC)
        signal = converter.to_payload(
            EventsReceived([TrackedEvent("ev-1", "page_view", now, "https://x.test/pricing")])
        )
        codec = LeadPayloadCodec(keys).with_context(context(0))
        print(f"payload sizes: start {start_payload.ByteSize()} B, signal {signal.ByteSize()} B")
        for name, payload in (("start input", start_payload), ("signal", signal)):
            encode, decode = await per_payload(codec, payload, rounds)
            print(f"{name:>12}: encode {encode * 1e6:6.1f} µs, decode {decode * 1e6:6.1f} µs (key cached)")
        misses = 200
        begin = time.perf_counter()
        for lead in range(1, misses + 1):
            await LeadPayloadCodec(keys).with_context(context(lead)).encode([signal])
        create = (time.perf_counter() - begin) / misses
        fresh = KeyRing(sessions, MasterKeys("bench-master"))
        begin = time.perf_counter()
        for lead in range(1, misses + 1):
            await LeadPayloadCodec(fresh).with_context(context(lead)).encode([signal])
        load = (time.perf_counter() - begin) / misses
        print(f"cache miss on SQLite: new lead (create + wrap + insert) {create * 1e3:.2f} ms, "
              f"known lead (select + unwrap) {load * 1e3:.2f} ms")  # fmt: skip
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    asyncio.run(main(parser.parse_args().rounds))
