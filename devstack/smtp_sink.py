"""A local SMTP server that accepts every message and keeps it on disk, so ``make run`` needs no relay.

Each message becomes ``<dir>/<UTC timestamp>-<seq>.eml`` (names sort by arrival) plus one JSON line in
``<dir>/index.jsonl``; the dashboard reads that index with :func:`read_messages`.

Standalone: ``python -m devstack.smtp_sink --host 127.0.0.1 --port 1025 --dir .data/mail``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import threading
from collections import deque
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

INDEX_NAME = "index.jsonl"
# Fixed EHLO name: aiosmtpd otherwise calls socket.getfqdn(), which can stall on a machine without DNS.
SERVER_NAME = "leadflow-sink"


class MailSink:
    """aiosmtpd handler: stores every message it is given and answers 250."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count(1)
        self._index_lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        received = datetime.now(UTC)
        # Name chosen on the event loop so concurrent sessions never pick the same sequence number.
        name = f"{received:%Y%m%dT%H%M%S.%f}-{next(self._seq):04d}.eml"
        content = envelope.original_content or b""
        entry = await asyncio.to_thread(self._store, name, received, envelope, content)
        print(f"mail: {entry['mail_from']} -> {', '.join(entry['rcpt_tos'])}: {entry['subject']!r}", flush=True)
        return "250 Message accepted for delivery"

    def _store(self, name: str, received: datetime, envelope: Envelope, content: bytes) -> dict[str, Any]:
        # Write then rename, so a reader never sees half a message; the index line comes last.
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.replace(self.directory / name)
        headers = BytesHeaderParser(policy=default_policy).parsebytes(content)
        entry = {
            "file": name,
            "received_at": received.isoformat(),
            "mail_from": envelope.mail_from or "",
            "rcpt_tos": list(envelope.rcpt_tos),
            "subject": str(headers.get("Subject", "")),
            "message_id": str(headers.get("Message-ID", "")).strip(),
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._index_lock, (self.directory / INDEX_NAME).open("a", encoding="utf-8") as index:
            index.write(line)
        return entry


def read_messages(directory: Path | str, limit: int = 50) -> list[dict[str, Any]]:
    """The last ``limit`` messages of the index, newest first; a torn or bad line is skipped."""
    path = Path(directory) / INDEX_NAME
    if limit <= 0 or not path.exists():
        return []
    with path.open(encoding="utf-8", errors="replace") as index:
        # deque keeps memory bounded however long the index grows; the over-read covers bad lines.
        lines = deque(index, maxlen=limit * 2)
    messages: list[dict[str, Any]] = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            messages.append(entry)
            if len(messages) == limit:
                break
    return messages


async def start_server(sink: MailSink, host: str, port: int) -> asyncio.Server:
    """Serve SMTP on host:port (0 picks a free port: read it from ``server.sockets``)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(sink, hostname=SERVER_NAME, enable_SMTPUTF8=True), host=host, port=port
    )


async def serve(host: str, port: int, directory: Path) -> None:
    """Run until SIGINT or SIGTERM, then close the listening socket and exit cleanly."""
    server = await start_server(MailSink(directory), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"SMTP sink listening on {host}:{port}, storing mail in {directory}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()
    print("SMTP sink stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("LEADFLOW_DATA_DIR", ".data")) / "mail")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.dir))


if __name__ == "__main__":
    main()
