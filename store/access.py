"""Store side of access control: API keys with roles, users of the pages and their sessions.

The API owns these records (one writer): the admin endpoints and the CLI write keys and users, the login
writes sessions. Clear keys and session tokens exist only in the answer that creates them; passwords only
as a salted scrypt hash (hashlib, stdlib: no extra dependency).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rules.access import ADMIN_KEY_PRINCIPAL, Principal, Role
from store.access_models import ApiKeyRow, UserRow, UserSessionRow
from store.db import rowcount
from store.repo import _writing

API_KEY_PREFIX = "lfk_"
# scrypt cost: 2**14 x 8 x 1 is 16 MiB and ~50 ms per check here (the OWASP minimum is 2**17 x 8 x 1 with
# 128 MiB; a login is rare, but two cores shared by many processes make the smaller figure the better trade).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    name: str
    role: Role
    rep_id: str | None
    teams: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def _key_info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(
        row.id, row.name, Role(row.role), row.rep_id, list(row.teams or []), row.created_at, row.expires_at,
        row.revoked_at,
    )  # fmt: skip


async def create_api_key(
    session: AsyncSession,
    name: str,
    role: Role,
    *,
    rep_id: str | None = None,
    teams: list[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKeyInfo, str]:
    """A new key; the clear key is returned here once and never stored."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(24)
    row = ApiKeyRow(
        id=f"ak_{secrets.token_hex(4)}",
        name=name,
        role=role.value,
        key_hash=hash_token(key),
        rep_id=rep_id,
        teams=sorted(set(teams or [])),
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    async with _writing(session):
        session.add(row)
    return _key_info(row), key


async def list_api_keys(session: AsyncSession) -> list[ApiKeyInfo]:
    rows = (await session.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id))).scalars()
    return [_key_info(r) for r in rows]


async def revoke_api_key(session: AsyncSession, key_id: str) -> bool:
    async with _writing(session):
        result = await session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return bool(rowcount(result))


@dataclass(frozen=True)
class KeyLookup:
    """What a presented key turned out to be: a principal, or why it opens nothing."""

    principal: Principal | None
    refusal: str | None = None
    expires_at: datetime | None = None


async def principal_for_key(session: AsyncSession, key: str, now: datetime) -> KeyLookup:
    row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_token(key)))
    if row is None:
        return KeyLookup(None, "the API key is not valid")
    if row.revoked_at is not None:
        return KeyLookup(None, "the API key was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        return KeyLookup(None, f"the API key expired at {row.expires_at.isoformat()}: ask an admin for a new one")
    return KeyLookup(_key_principal(row), expires_at=row.expires_at)


def _key_principal(row: ApiKeyRow) -> Principal:
    return Principal("key", row.id, row.name, Role(row.role), row.rep_id, frozenset(row.teams or []))


# ---------------------------------------------------------------- passwords and users


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        given = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(given, expected)


@functools.cache
def _dummy_hash() -> str:
    """A real hash to check against when the user does not exist, so a wrong user name takes as long as a
    wrong password (no user enumeration by timing). Made on first use: importing this costs nothing."""
    return hash_password(secrets.token_urlsafe(8))


@dataclass(frozen=True)
class UserInfo:
    id: str
    username: str
    role: Role
    rep_id: str | None
    teams: list[str]
    created_at: datetime
    disabled_at: datetime | None


def _user_info(row: UserRow) -> UserInfo:
    return UserInfo(
        row.id, row.username, Role(row.role), row.rep_id, list(row.teams or []), row.created_at, row.disabled_at
    )


def _user_principal(row: UserRow) -> Principal:
    return Principal("user", row.id, row.username, Role(row.role), row.rep_id, frozenset(row.teams or []))


async def put_user(
    session: AsyncSession,
    username: str,
    password: str,
    role: Role,
    *,
    rep_id: str | None = None,
    teams: list[str] | None = None,
) -> UserInfo:
    """Create a user, or replace an existing one's password, role and scope (and enable it again).
    Replacing the password ends the user's sessions."""
    password_hash = await asyncio.to_thread(hash_password, password)
    async with _writing(session):
        row = await session.scalar(select(UserRow).where(UserRow.username == username))
        if row is None:
            row = UserRow(id=f"us_{secrets.token_hex(4)}", username=username, created_at=datetime.now(UTC))
            session.add(row)
        else:
            await session.execute(delete(UserSessionRow).where(UserSessionRow.user_id == row.id))
        row.password_hash, row.role, row.rep_id = password_hash, role.value, rep_id
        row.teams, row.disabled_at = sorted(set(teams or [])), None
    return _user_info(row)


async def list_users(session: AsyncSession) -> list[UserInfo]:
    rows = (await session.execute(select(UserRow).order_by(UserRow.username))).scalars()
    return [_user_info(r) for r in rows]


async def disable_user(session: AsyncSession, username: str) -> bool:
    """Disable a user and end their sessions (kept: the audit log refers to them)."""
    async with _writing(session):
        row = await session.scalar(select(UserRow).where(UserRow.username == username, UserRow.disabled_at.is_(None)))
        if row is None:
            return False
        row.disabled_at = datetime.now(UTC)
        await session.execute(delete(UserSessionRow).where(UserSessionRow.user_id == row.id))
    return True


async def check_password(session: AsyncSession, username: str, password: str) -> Principal | None:
    row = await session.scalar(select(UserRow).where(UserRow.username == username, UserRow.disabled_at.is_(None)))
    ok = await asyncio.to_thread(password_matches, password, row.password_hash if row else _dummy_hash())
    return _user_principal(row) if row is not None and ok else None


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    csrf_token: str


async def open_session(session: AsyncSession, user_id: str, lifetime: timedelta) -> tuple[str, str]:
    """A new session for a user (or an API key's id, or ``admin-key``): (the cookie's token, the CSRF token
    of its forms)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    async with _writing(session):
        await session.execute(delete(UserSessionRow).where(UserSessionRow.expires_at <= now))
        session.add(
            UserSessionRow(
                token_hash=hash_token(token),
                user_id=user_id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return token, csrf


async def session_principal(session: AsyncSession, token: str, now: datetime) -> SignedIn | None:
    """The signed-in user, or the API key a browser signed in with (checked again: a revoked or expired
    key ends its sessions), with the session's CSRF token."""
    row = await session.scalar(
        select(UserSessionRow).where(UserSessionRow.token_hash == hash_token(token), UserSessionRow.expires_at > now)
    )
    if row is None:
        return None
    if row.user_id == ADMIN_KEY_PRINCIPAL.id:
        return SignedIn(ADMIN_KEY_PRINCIPAL, row.csrf_token)
    if row.user_id.startswith("ak_"):
        key = await session.get(ApiKeyRow, row.user_id)
        if key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
            return None
        return SignedIn(_key_principal(key), row.csrf_token)
    user = await session.scalar(select(UserRow).where(UserRow.id == row.user_id, UserRow.disabled_at.is_(None)))
    return None if user is None else SignedIn(_user_principal(user), row.csrf_token)


async def close_session(session: AsyncSession, token: str) -> None:
    async with _writing(session):
        await session.execute(delete(UserSessionRow).where(UserSessionRow.token_hash == hash_token(token)))
