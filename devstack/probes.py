"""Readiness checks. A probe returns True when ready, or False / raises NotReady (saying why) while not."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

LOCAL = "127.0.0.1"


class NotReady(Exception):
    """A server is not ready yet; the message says what the probe saw."""


def connect_host(host: str) -> str:
    """Where to reach, from this machine, a server bound to ``host``."""
    return LOCAL if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (compared, not bound)


def port_free(host: str, port: int) -> OSError | None:
    """None when we could listen on host:port, else the error binding it gave."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((connect_host(host), port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (our own http:// URL)
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        raise NotReady(f"GET {url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise NotReady(f"GET {url}: {getattr(exc, 'reason', exc)}") from exc
