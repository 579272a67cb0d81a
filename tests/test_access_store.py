"""The store side of keys, users, sessions and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rules.access import Role
from store import access, audit

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@BOTH
async def test_keys_resolve_to_their_role_and_scope_until_revoked_or_expired(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    async with sessions() as session:
        info, key = await access.create_api_key(session, "japan", Role.manager, teams=["japan", "japan"])
        found = await access.principal_for_key(session, key, now)
        assert found.principal is not None and found.principal.teams == frozenset({"japan"})
        assert found.principal.role is Role.manager and found.principal.id == info.id
        assert (await access.principal_for_key(session, key + "x", now)).refusal == "the API key is not valid"
        _, soon = await access.create_api_key(session, "soon", Role.rep, rep_id="rep-aiko", expires_at=now)
        assert "expired" in ((await access.principal_for_key(session, soon, now)).refusal or "")
        assert await access.revoke_api_key(session, info.id)
        assert not await access.revoke_api_key(session, info.id)
        assert "revoked" in ((await access.principal_for_key(session, key, now)).refusal or "")
        assert [k.name for k in await access.list_api_keys(session)] == ["japan", "soon"]


@BOTH
async def test_users_sign_in_and_sessions_end(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        user = await access.put_user(session, "aiko", "a long enough passphrase", Role.rep, rep_id="rep-aiko")
        principal = await access.check_password(session, "aiko", "a long enough passphrase")
        assert principal is not None and principal.rep_id == "rep-aiko" and principal.kind == "user"
        assert await access.check_password(session, "aiko", "wrong") is None
        token, csrf = await access.open_session(session, user.id, timedelta(hours=1))
        signed_in = await access.session_principal(session, token, datetime.now(UTC))
        assert signed_in is not None and signed_in.csrf_token == csrf
        later = datetime.now(UTC) + timedelta(hours=2)
        assert await access.session_principal(session, token, later) is None
        # A new password ends the sessions; so does disabling the user.
        await access.put_user(session, "aiko", "another long passphrase", Role.rep, rep_id="rep-aiko")
        assert await access.session_principal(session, token, datetime.now(UTC)) is None
        token, _ = await access.open_session(session, user.id, timedelta(hours=1))
        assert await access.disable_user(session, "aiko")
        assert await access.session_principal(session, token, datetime.now(UTC)) is None
        assert await access.check_password(session, "aiko", "another long passphrase") is None


@BOTH
async def test_audit_entries_filter_and_export_in_order(sessions: async_sessionmaker[AsyncSession]) -> None:
    start = datetime.now(UTC)
    async with sessions() as session:
        for number in range(5):
            await audit.record(
                session,
                audit.AuditEntry(
                    at=start + timedelta(seconds=number), actor_kind="key", actor_id=f"ak_{number % 2}",
                    actor_role="admin", method="PUT", route="/v1/teams/{team_key}", target=f"team_key=t{number}",
                    summary="name=x", status=200 if number else 403, client_ip="127.0.0.1",
                ),
            )  # fmt: skip
        total, items = await audit.list_entries(session, audit.AuditFilter(actor="ak_0"), limit=2, offset=0)
        assert total == 3 and [i["target"] for i in items] == ["team_key=t4", "team_key=t2"]
        total, _ = await audit.list_entries(
            session, audit.AuditFilter(route="PUT /v1/teams", status_min=400), limit=9, offset=0
        )
        assert total == 1
    exported = [row["target"] async for row in audit.iter_entries(sessions, audit.AuditFilter(since=start))]
    assert exported == [f"team_key=t{n}" for n in range(5)]


@BOTH
async def test_a_keys_session_ends_with_the_key(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        info, _ = await access.create_api_key(session, "desk", Role.manager, teams=["japan"])
        token, _ = await access.open_session(session, info.id, timedelta(hours=1))
        signed_in = await access.session_principal(session, token, datetime.now(UTC))
        assert signed_in is not None and signed_in.principal.teams == frozenset({"japan"})
        await access.revoke_api_key(session, info.id)
        assert await access.session_principal(session, token, datetime.now(UTC)) is None
        admin_token, _ = await access.open_session(session, "admin-key", timedelta(hours=1))
        admin = await access.session_principal(session, admin_token, datetime.now(UTC))
        assert admin is not None and admin.principal.role is Role.admin
