"""Tables of who may do what, and what they did: API keys with roles, users of the pages with their
sessions, and the audit log.

Kept apart from models.py (the read model of leads). The API owns every row here: the admin endpoints and
the CLI write keys and users, the login writes sessions, and only the audit middleware writes the log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models import Base, BigIntId


class ApiKeyRow(Base):
    """An API key with one role. Only a SHA-256 of the key is kept (keys are random, 192 bits: no salt or
    slow hash needed); ``rep_id`` / ``teams`` scope a rep's or a manager's key to their leads."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(), primary_key=True)  # public handle, e.g. ak_3f9a1c2e
    name: Mapped[str]
    role: Mapped[str]
    key_hash: Mapped[str] = mapped_column(unique=True)
    rep_id: Mapped[str | None]
    teams: Mapped[list[str]] = mapped_column(JSON(), default=list)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class UserRow(Base):
    """A person who signs in to the pages: a password hash (scrypt, salted), a role and its scope."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(), primary_key=True)  # us_...
    username: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str]
    role: Mapped[str]
    rep_id: Mapped[str | None]
    teams: Mapped[list[str]] = mapped_column(JSON(), default=list)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class UserSessionRow(Base):
    """A signed-in browser. The cookie carries a random token; only its SHA-256 is kept, with the CSRF
    token the session's forms must echo."""

    __tablename__ = "user_sessions"

    token_hash: Mapped[str] = mapped_column(String(), primary_key=True)
    user_id: Mapped[str] = mapped_column(index=True)
    csrf_token: Mapped[str]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class AuditRow(Base):
    """One write through the API or the pages: who, what, when, from where. Never a secret, never a whole
    email address (masked), never a body: field names and a few non-personal values."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_actor_id_at", "actor_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_kind: Mapped[str]  # key | user | admin-key
    actor_id: Mapped[str]
    actor_role: Mapped[str]
    method: Mapped[str]
    route: Mapped[str] = mapped_column(index=True)  # the route's template, e.g. PUT /v1/teams/{team_key}
    target: Mapped[str | None] = mapped_column(index=True)
    summary: Mapped[str] = mapped_column(Text())
    status: Mapped[int] = mapped_column(Integer())
    client_ip: Mapped[str | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
