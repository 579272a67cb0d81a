"""A load generator's HTTP/1.1 client: keep-alive connections, JSON in and out, nothing else.

The bench's two sides share two cores with their client. The bare side's client is the Temporal SDK (its
gRPC in Rust); httpx spent 2-5 ms of this process's CPU per leadflow request, more than the whole bare path
per signal, and that CPU was taken from the stack under test. This client spends a fraction of it, so the
ratios weigh leadflow's processes, not the load generator's. `e2e_bench.py --httpx` measures with httpx.
Only what the bench needs: 127.0.0.1, Content-Length bodies (uvicorn's JSON answers), no redirects.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx


@dataclass
class LeanResponse:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise httpx.HTTPStatusError(f"{self.status_code}: {self.text[:200]}", request=None, response=None)  # type: ignore[arg-type]


class LeanHttp:
    """``post(path, json=...)`` and ``get(path)`` over a pool of kept-alive connections. A broken connection
    raises httpx.TransportError (the bench retries those), and is dropped from the pool."""

    def __init__(self, base_url: str, headers: dict[str, str], connections: int = 32, timeout: float = 60.0) -> None:
        self.timeout = timeout
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", "Connection": "keep-alive", **headers}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(connections)

    async def __aenter__(self) -> LeanHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()

    async def post(self, path: str, json: Any = None) -> LeanResponse:
        body = _dumps(json)
        head = f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return await self._send(head.encode() + self._fixed + b"\r\n" + body)

    async def get(self, path: str) -> LeanResponse:
        return await self._send(f"GET {path} HTTP/1.1\r\n".encode() + self._fixed + b"\r\n")

    async def _send(self, request: bytes) -> LeanResponse:
        async with self._slots:
            reader, writer = self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(reader, writer, request)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                writer.close()
                raise httpx.TransportError(f"connection lost: {exc!r}") from exc

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> LeanResponse:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        content = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        return LeanResponse(status, headers, content)


def _dumps(value: Any) -> bytes:
    return b"" if value is None else json.dumps(value, separators=(",", ":")).encode()
