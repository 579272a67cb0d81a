"""Keyed hashes of email addresses: the suppression list must match an address without keeping it."""

from __future__ import annotations

import hashlib
import hmac


def normalize_address(address: str) -> str:
    return address.strip().lower()


def address_hash(address: str, key: str) -> str:
    """HMAC-SHA256 of the normalized address, domain-separated from the lead-id hash made with the same key."""
    message = b"suppression\x00" + normalize_address(address).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
