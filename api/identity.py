"""Which lead an incoming lead id is now: merged duplicates and the ids of addresses a lead took on resolve
to the surviving lead (store/lead_aliases.py; written by the lead workflows, read here).

Paths that name a lead by id try the id first and look up an alias only when its workflow has ended (a
merged duplicate ends), so the common case costs nothing; paths that create leads from an email look up
first, since an address a lead took on has no workflow of its own to fail on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from store import lead_aliases

if TYPE_CHECKING:
    from api.deps import AppState


async def current_leads(state: AppState, lead_ids: Iterable[str]) -> dict[str, str]:
    """alias -> lead for those of ``lead_ids`` that are aliases."""
    async with state.sessions() as session:
        return await lead_aliases.resolve(session, lead_ids)


async def current_lead(state: AppState, lead_id: str) -> str:
    """The lead ``lead_id`` is now: itself unless it is an alias."""
    return (await current_leads(state, [lead_id])).get(lead_id, lead_id)


async def survivor_of(state: AppState, lead_id: str) -> str | None:
    """The lead ``lead_id`` was merged into (or whose address it was), or None when it is no alias."""
    return (await current_leads(state, [lead_id])).get(lead_id)
