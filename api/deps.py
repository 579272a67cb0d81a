"""Shared dependencies: application state, API key check, store sessions, Temporal client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.auth import KeyCache
from api.intake import RecentIds
from api.login_throttle import LoginThrottle
from api.roles import current_principal
from rules.access import Principal
from runtime import ActivePlaybook, compile_published, connect_temporal
from settings import Settings
from store import playbooks
from workflows.payloads import LeadOptions

PLAYBOOK_CHECK_SECONDS = 2.0


class ServiceUnavailable(Exception):
    """A dependency (Temporal, the database) cannot be reached right now: answer 503 with Retry-After."""


class Overloaded(ServiceUnavailable):
    """This API process already has as many Temporal calls in flight as it allows."""


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    playbook: ActivePlaybook
    api_key: str
    id_key: str
    # Unsubscribe tokens verify against the current key, then the previous ones (rotation).
    unsubscribe_keys: list[str] = field(default_factory=list)
    # Event ids this process accepted lately (api/intake.py): a repeated request is answered at once.
    recent_event_ids: RecentIds = field(default_factory=RecentIds)
    # Stored API keys' lookups (api/auth.py); the keys API clears it when it revokes one.
    key_cache: KeyCache = field(default_factory=KeyCache)
    _client: Client | None = None
    _login_throttle: LoginThrottle | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _inflight: int = 0  # Temporal calls in flight (nobody waits for a slot: at the bound a call is refused)

    @asynccontextmanager
    async def temporal_call(self) -> AsyncIterator[Client]:
        """A Temporal client for one call, or Overloaded at once when too many calls are in flight."""
        if self._inflight >= self.settings.max_inflight_temporal_calls:
            raise Overloaded(f"{self.settings.max_inflight_temporal_calls} Temporal calls in flight")
        self._inflight += 1
        try:
            yield await self.temporal()
        finally:
            self._inflight -= 1

    _published: ActivePlaybook | None = None
    _published_number: int | None = None
    _checked_at: float = -1e9

    async def current_playbook(self) -> ActivePlaybook:
        """The latest published version (checked at most every PLAYBOOK_CHECK_SECONDS), else the file.
        New leads pin it for their whole run; running leads keep theirs."""
        now = time.monotonic()
        if now - self._checked_at < PLAYBOOK_CHECK_SECONDS:
            return self._published or self.playbook
        self._checked_at = now
        async with self.sessions() as session:
            number = await playbooks.latest_number(session)
            if number is None:
                self._published, self._published_number = None, None
            elif number != self._published_number:
                row = await playbooks.get(session, number)
                assert row is not None
                self._published = compile_published(row["document"], f"v{number}")
                self._published_number = number
        return self._published or self.playbook

    @property
    def login_throttle(self) -> LoginThrottle:
        """Failed sign-ins lately (api/login_throttle.py), made on first use from the settings."""
        if self._login_throttle is None:
            self._login_throttle = LoginThrottle(self.settings.login_max_failures, self.settings.login_lockout_seconds)
        return self._login_throttle

    @property
    def lead_options(self) -> LeadOptions:
        return LeadOptions(self.settings.projection_delay_seconds, self.settings.search_attributes)

    async def temporal(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.wait_for(connect_temporal(self.settings, self.sessions), 10)
                    except Exception as exc:  # any connect failure means the same thing to the caller
                        raise ServiceUnavailable(f"Temporal at {self.settings.temporal_address}: {exc}") from exc
        return self._client


# Dependencies are coroutines: FastAPI runs a plain function in its thread pool, two thread hops per
# request for what is a dict read and a comparison.
async def app_state(request: Request) -> AppState:
    return request.app.state.leadflow


async def require_api_key(request: Request) -> None:
    """Kept for routers written before roles: it only asks for a caller. Such a route declares no role, so
    only admin may call it (api/roles.py) and tests/test_roles.py names it: declare its roles instead."""
    current_principal(request)


async def session(state: Annotated[AppState, Depends(app_state)]) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as s:
        yield s


State = Annotated[AppState, Depends(app_state)]
Session = Annotated[AsyncSession, Depends(session)]
Authorized = Depends(require_api_key)
# The caller of a route (its roles were checked before it runs): rep and manager scoping use it.
Caller = Annotated[Principal, Depends(current_principal)]
