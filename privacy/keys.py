"""Per-lead data keys, wrapped by the master key, cached unwrapped in memory (bounded, short-lived).

Envelope encryption: each lead's payloads are sealed with its own random AES-256-GCM data key; the
store keeps that key only wrapped (AES-GCM) by a master key from settings. Erasing a lead destroys
its wrapped key, so every copy of its history (Temporal's database, backups, exports) becomes noise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import privacy

NONCE_BYTES = 12


class LeadErased(Exception):
    """The lead was erased: its data key is destroyed, nothing can be encrypted or decrypted for it."""

    def __init__(self, lead_id: str) -> None:
        super().__init__(f"lead {lead_id} was erased: its data key is destroyed")
        self.lead_id = lead_id


class KeyUnavailable(Exception):
    """A data key is wrapped by a master key this process was not given (see key rotation in README)."""


@dataclass(frozen=True)
class MasterKey:
    key_id: str  # a fingerprint, stored beside each wrapped key
    aead: AESGCM

    @classmethod
    def from_secret(cls, secret: str) -> MasterKey:
        # Any secret string (make run writes 32 random bytes, base64): HKDF makes it a 256-bit key.
        raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"leadflow master key v1").derive(
            secret.encode()
        )
        return cls(hashlib.sha256(raw).hexdigest()[:16], AESGCM(raw))


class MasterKeys:
    """The current master key (wraps every new key) and previous ones (only unwrap, during rotation)."""

    def __init__(self, current: str, previous: list[str] | None = None) -> None:
        self.current = MasterKey.from_secret(current)
        self._by_id = {self.current.key_id: self.current}
        for secret in previous or []:
            key = MasterKey.from_secret(secret)
            self._by_id.setdefault(key.key_id, key)

    @staticmethod
    def _aad(lead_id: str, key_id: str) -> bytes:
        # Binds a wrapped key to its row: a key copied onto another lead does not unwrap.
        return f"{lead_id}\x00{key_id}".encode()

    def wrap(self, data_key: bytes, lead_id: str, key_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self.current.aead.encrypt(nonce, data_key, self._aad(lead_id, key_id))

    def unwrap(self, stored: privacy.StoredKey) -> bytes:
        if stored.wrapped_key is None:
            raise LeadErased(stored.lead_id)
        master = self._by_id.get(stored.master_key_id or "")
        if master is None:
            raise KeyUnavailable(
                f"the data key of {stored.lead_id} is wrapped by master key {stored.master_key_id}, "
                "which this process does not have: set LEADFLOW_MASTER_KEY_PREVIOUS during a rotation"
            )
        blob = stored.wrapped_key
        return master.aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad(stored.lead_id, stored.key_id))


@dataclass(frozen=True)
class DataKey:
    lead_id: str
    key_id: str
    aead: AESGCM


class KeyRing:
    """Data keys through the store, with a bounded in-memory cache of unwrapped keys.

    ``ttl_seconds`` bounds how long an erased lead's key may live on in another process's memory.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        masters: MasterKeys,
        *,
        max_cached: int = 10_000,
        ttl_seconds: float = 300.0,
    ) -> None:
        self.sessions = sessions
        self.masters = masters
        self.max_cached = max_cached
        self.ttl_seconds = ttl_seconds
        self._cache: OrderedDict[str, tuple[DataKey, float]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[DataKey]] = {}
        self._batch: dict[str, bool] = {}  # lead -> create it if missing, for the next flush
        self._likely_new: set[str] = set()  # of the batch, leads a caller expects to have no key yet
        self._flush: asyncio.Future[None] | None = None
        self.misses = 0

    def _cached(self, lead_id: str) -> DataKey | None:
        entry = self._cache.get(lead_id)
        if entry is None:
            return None
        key, expires = entry
        if expires < time.monotonic():
            del self._cache[lead_id]
            return None
        self._cache.move_to_end(lead_id)
        return key

    def _remember(self, key: DataKey) -> DataKey:
        self._cache[key.lead_id] = (key, time.monotonic() + self.ttl_seconds)
        self._cache.move_to_end(key.lead_id)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return key

    def forget(self, lead_id: str) -> None:
        self._cache.pop(lead_id, None)

    async def _load(self, lead_id: str, *, create: bool, likely_new: bool = False) -> DataKey:
        # One store round trip per lead and process, even when a burst of payloads misses at once; and the
        # leads that miss in the same moment (a burst of new leads at the API, a worker's first tasks) share
        # one query and one transaction: on SQLite every transaction waits for the one write lock.
        pending = self._loading.get(lead_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[lead_id] = pending
            self._batch[lead_id] = create
        elif create and lead_id in self._batch:  # not fetched yet: fetch it for creating
            self._batch[lead_id] = True
        if likely_new and lead_id in self._batch:
            self._likely_new.add(lead_id)
        if self._batch and self._flush is None:
            self._flush = asyncio.ensure_future(self._flush_batch())
        return await asyncio.shield(pending)

    async def _flush_batch(self) -> None:
        await asyncio.sleep(0)  # the other misses of this moment join the batch
        batch, self._batch, self._flush = self._batch, {}, None
        likely_new, self._likely_new = self._likely_new, set()
        try:
            stored = await self._fetch(batch, likely_new)
        except BaseException as exc:  # each waiter gets it (this task's own result is never read)
            for lead_id in batch:
                self._settle(lead_id, exc)
            return
        for lead_id in batch:
            row = stored.get(lead_id)
            if row is None:
                self._settle(lead_id, KeyUnavailable(f"lead {lead_id} has no data key in the store"))
                continue
            try:
                key = self._remember(DataKey(lead_id, row.key_id, AESGCM(self.masters.unwrap(row))))
            except Exception as exc:  # erased, or wrapped by a master key this process lacks
                self._settle(lead_id, exc)
            else:
                self._settle(lead_id, key)

    def _settle(self, lead_id: str, outcome: DataKey | BaseException) -> None:
        pending = self._loading.pop(lead_id, None)
        if pending is None or pending.done():
            return
        if isinstance(outcome, BaseException):
            pending.set_exception(outcome)
        else:
            pending.set_result(outcome)

    def _new_key(self, lead_id: str) -> privacy.StoredKey:
        key_id = uuid.uuid4().hex
        wrapped = self.masters.wrap(AESGCM.generate_key(256), lead_id, key_id)
        return privacy.StoredKey(lead_id, key_id, self.masters.current.key_id, wrapped)

    async def _fetch(self, batch: dict[str, bool], likely_new: set[str]) -> dict[str, privacy.StoredKey]:
        """lead -> stored key for the batch's leads, creating the missing ones marked for creation.

        Leads expected to be new are inserted first (insert-unless-present, then read what won): one
        statement fewer than looking first, on the path of every new lead. The others are looked up
        first, so a worker's misses for existing leads stay reads (no write lock taken on SQLite)."""
        self.misses += len(batch)
        async with self.sessions() as session:
            stored: dict[str, privacy.StoredKey] = {}
            inserted_first = [self._new_key(lead_id) for lead_id in batch if lead_id in likely_new]
            if inserted_first:
                stored = await privacy.add_lead_keys(session, inserted_first, datetime.now(UTC))
            rest = [lead_id for lead_id in batch if lead_id not in stored]
            if rest:
                stored |= await privacy.get_lead_keys(session, rest)
                new = [self._new_key(lead_id) for lead_id in rest if batch[lead_id] and lead_id not in stored]
                if new:
                    stored |= await privacy.add_lead_keys(session, new, datetime.now(UTC))
        return stored

    async def for_encoding(self, lead_id: str) -> DataKey:
        """The lead's key, created on its first payload; LeadErased once it was erased."""
        return self._cached(lead_id) or await self._load(lead_id, create=True)

    async def for_new_lead(self, lead_id: str) -> DataKey:
        """``for_encoding`` for a lead about to be started, which most likely has no key yet: its key is
        created with one round trip fewer (an erased lead still raises LeadErased)."""
        return self._cached(lead_id) or await self._load(lead_id, create=True, likely_new=True)

    async def for_decoding(self, lead_id: str, key_id: str) -> DataKey:
        key = self._cached(lead_id) or await self._load(lead_id, create=False)
        if key.key_id != key_id:
            raise KeyUnavailable(f"payload of {lead_id} was sealed with key {key_id}, which no longer exists")
        return key
