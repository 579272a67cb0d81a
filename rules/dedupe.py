"""Which event ids a lead has already counted, for a stated window and in bounded space.

README promises that a repeated event id is counted once. A plain list of recent ids forgot after 500
ids, so a client retrying an older post was counted again. This set remembers every id for
``WINDOW_DAYS`` whole days after the UTC day it was first received, and stays small enough to travel in
the lead's state across continue-as-new:

- ids are bucketed by the UTC day the workflow received them (``now``, never the client's ``at``, which
  a retry may backdate); buckets older than the window are dropped;
- a day keeps exact 64-bit hashes (blake2b: stable across processes, unlike ``hash()``) up to
  ``EXACT_PER_DAY`` ids; a busier day turns into a Bloom filter of ``BLOOM_BITS`` bits and
  ``BLOOM_HASHES`` probes, the same 4 KiB as a full exact day. A lead therefore never keeps more than
  ``MAX_BYTES`` (127 KiB; 4/3 of that as base64 in a payload) whatever it receives.
- a day remembers at most ``DAY_CAPACITY`` ids: past it (a bot, not a buyer) further new ids that day
  are counted but not remembered, instead of filling the filter until every id of the next month looks
  like a repeat.

Errors are rare and documented: inside the window an id is never forgotten (except past a day's
capacity). A new id can be taken for a repeat (and not counted) with probability about n / 2**64 on an
exact day of n ids, and ``bloom_false_positive_rate(n)`` on a Bloom day of n ids (< 1e-5 at 1,000,
~5e-4 at 2,000, ~2 % at the 4,096 capacity). Pure: times come from the caller.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

WINDOW_DAYS = 30
HASH_BYTES = 8
EXACT_PER_DAY = 512
BLOOM_BITS = EXACT_PER_DAY * HASH_BYTES * 8  # 32,768 bits: a Bloom day is no bigger than a full exact day
BLOOM_HASHES = 8
DAY_CAPACITY = 4096
MAX_BYTES = (WINDOW_DAYS + 1) * EXACT_PER_DAY * HASH_BYTES


@dataclass
class SeenDay:
    """The ids first received on one UTC day: exact hashes, or a Bloom filter once busy."""

    day: int  # date.toordinal() of the UTC day
    count: int = 0
    hashes: str = ""  # base64 of HASH_BYTES-byte hashes in arrival order (while count <= EXACT_PER_DAY)
    bloom: str = ""  # base64 of BLOOM_BITS bits (once the day outgrew the exact form)


@dataclass
class SeenEvents:
    """Event ids a lead counted in the last ``WINDOW_DAYS`` days (carried in ``LeadState``)."""

    days: list[SeenDay] = field(default_factory=list)

    def first_time(self, event_id: str, now: datetime) -> bool:
        """True (and remembered) when ``event_id`` was not received in the window; False for a repeat."""
        key = id_hash(event_id)
        today = utc_day(now)
        if self.days and self.days[0].day < today - WINDOW_DAYS:
            self.days = [d for d in self.days if d.day >= today - WINDOW_DAYS]
        if any(_contains(day, key) for day in self.days):
            return False
        bucket = self._bucket(today)
        if bucket.count < DAY_CAPACITY:
            _add(bucket, key)
        return True

    def seen(self, event_id: str, now: datetime) -> bool:
        """Whether ``event_id`` counts as a repeat at ``now``, without remembering it."""
        key, oldest = id_hash(event_id), utc_day(now) - WINDOW_DAYS
        return any(_contains(day, key) for day in self.days if day.day >= oldest)

    def remember(self, event_ids: list[str], now: datetime) -> None:
        """Take over ids an older state kept (its ``seen_event_ids`` list) as received ``now``."""
        for event_id in event_ids:
            self.first_time(event_id, now)

    def absorb(self, other: SeenEvents) -> None:
        """Also remember every id ``other`` remembers, each under the day it was received there (a merge of
        two leads: a retried event of either counts once for the survivor). One re-encoding per day."""
        for theirs in other.days:
            ours = next((d for d in self.days if d.day == theirs.day), None)
            if ours is None:
                ours = SeenDay(theirs.day)
                self.days.append(ours)
                self.days.sort(key=lambda d: d.day)
            if theirs.bloom:
                _or_bloom(ours, theirs)
            else:
                _add_all(ours, sorted(_exact_keys(theirs) - (set() if ours.bloom else _exact_keys(ours))))

    def size_bytes(self) -> int:
        """Bytes kept (a payload carries them as base64: 4/3 of this)."""
        return sum(len(base64.b64decode(d.hashes)) + len(base64.b64decode(d.bloom)) for d in self.days)

    def _bucket(self, today: int) -> SeenDay:
        if self.days and self.days[-1].day == today:
            return self.days[-1]
        found = next((d for d in self.days if d.day == today), None)
        if found is None:  # workflow time only moves on; a simulator's caller might go back
            found = SeenDay(today)
            self.days.append(found)
            self.days.sort(key=lambda d: d.day)
        return found


def utc_day(now: datetime) -> int:
    return (now.astimezone(UTC) if now.tzinfo else now).date().toordinal()


def id_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=HASH_BYTES).digest()


def bloom_false_positive_rate(ids_in_day: int) -> float:
    """Chance that a new id is taken for one received on a Bloom day holding ``ids_in_day`` ids."""
    return float((1 - math.exp(-BLOOM_HASHES * ids_in_day / BLOOM_BITS)) ** BLOOM_HASHES)


# ---------------------------------------------------------------- one day
#
# Each day keeps its decoded form beside the base64 text (not a dataclass field, so never serialised),
# tagged with the text it was decoded from: a day from a payload, or one whose text someone replaced,
# decodes afresh. A lookup is then a set or bit test, and an insert re-encodes only today's bucket.

_CACHE = "_decoded"


def _exact_keys(day: SeenDay) -> set[bytes]:
    cached = vars(day).get(_CACHE)
    if cached is None or cached[0] is not day.hashes:
        raw = base64.b64decode(day.hashes)
        cached = (day.hashes, {raw[i : i + HASH_BYTES] for i in range(0, len(raw), HASH_BYTES)})
        vars(day)[_CACHE] = cached
    keys: set[bytes] = cached[1]
    return keys


def _bloom_bits(day: SeenDay) -> bytearray:
    cached = vars(day).get(_CACHE)
    if cached is None or cached[0] is not day.bloom:
        cached = (day.bloom, bytearray(base64.b64decode(day.bloom)))
        vars(day)[_CACHE] = cached
    bits: bytearray = cached[1]
    return bits


def _contains(day: SeenDay, key: bytes) -> bool:
    if day.bloom:
        bits = _bloom_bits(day)
        return all(bits[i >> 3] & (1 << (i & 7)) for i in _probes(key))
    return key in _exact_keys(day)


def _add(day: SeenDay, key: bytes) -> None:
    # Copy on write: a shallow copy of a day may share the cached set or bits, and must not see this key.
    day.count += 1
    if day.bloom:
        bits = bytearray(_bloom_bits(day))
        _set_bits(bits, key)
    else:
        keys = _exact_keys(day) | {key}
        if len(keys) <= EXACT_PER_DAY:
            # Appended in arrival order (set order varies between processes; the state must not).
            day.hashes = base64.b64encode(base64.b64decode(day.hashes) + key).decode("ascii")
            vars(day)[_CACHE] = (day.hashes, keys)
            return
        bits = bytearray(BLOOM_BITS // 8)
        for each in keys:  # order does not matter to a Bloom filter
            _set_bits(bits, each)
        day.hashes = ""
    day.bloom = base64.b64encode(bits).decode("ascii")
    vars(day)[_CACHE] = (day.bloom, bits)


def _add_all(day: SeenDay, keys: list[bytes]) -> None:
    """``_add`` for many keys at once (sorted by the caller: the state must not depend on set order)."""
    if not keys:
        return
    day.count += len(keys)
    if not day.bloom and len(_exact_keys(day)) + len(keys) <= EXACT_PER_DAY:
        day.hashes = base64.b64encode(base64.b64decode(day.hashes) + b"".join(keys)).decode("ascii")
        return
    bits = bytearray(_bloom_bits(day)) if day.bloom else bytearray(BLOOM_BITS // 8)
    for key in [*([] if day.bloom else sorted(_exact_keys(day))), *keys]:
        _set_bits(bits, key)
    day.hashes = ""
    day.bloom = base64.b64encode(bits).decode("ascii")
    vars(day)[_CACHE] = (day.bloom, bits)


def _or_bloom(ours: SeenDay, theirs: SeenDay) -> None:
    """``ours`` becomes a Bloom day holding its own ids and those of the Bloom day ``theirs``."""
    if ours.bloom:
        bits = bytearray(_bloom_bits(ours))
    else:
        bits = bytearray(BLOOM_BITS // 8)
        for key in _exact_keys(ours):
            _set_bits(bits, key)
    for i, byte in enumerate(_bloom_bits(theirs)):
        bits[i] |= byte
    ours.count += theirs.count
    ours.hashes = ""
    ours.bloom = base64.b64encode(bits).decode("ascii")
    vars(ours)[_CACHE] = (ours.bloom, bits)


def _set_bits(bits: bytearray, key: bytes) -> None:
    for i in _probes(key):
        bits[i >> 3] |= 1 << (i & 7)


def _probes(key: bytes) -> list[int]:
    # Double hashing (Kirsch-Mitzenmacher) from the stored hash alone: exact days convert without the ids.
    first, second = int.from_bytes(key[:4], "big"), int.from_bytes(key[4:], "big") | 1
    return [(first + i * second) % BLOOM_BITS for i in range(BLOOM_HASHES)]
