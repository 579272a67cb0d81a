"""Rep and manager scoping on lead routes: a rep reaches the leads they own, a manager their teams' leads.

Installed once on the leads router (every route with a ``{lead_id}`` in its path, present and future), and
read from the store's projection of the lead's owner (``rules.access.may_see_lead`` decides).
"""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from api.deps import State
from api.roles import principal_of
from rules.access import Principal, Role, may_see_lead, sees_every_lead
from store import repo
from store.scope import Scope


async def lead_in_scope(request: Request, state: State) -> None:
    lead_id = request.path_params.get("lead_id")
    principal = principal_of(request)
    if lead_id is None or principal is None or sees_every_lead(principal):
        return
    async with state.sessions() as session:
        lead = await repo.get_lead(session, lead_id)
    if lead is None or not may_see_lead(principal, lead.get("owner_rep_id"), lead.get("owner_team")):
        whose = "you own" if principal.role is Role.rep else "your teams own"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"lead {lead_id} is not among the leads {whose}")


def touch_rep(principal: Principal, rep_id: str | None) -> str | None:
    """A rep logs touches as themselves: their own id by default, another rep's is refused."""
    if principal.role is not Role.rep:
        return rep_id
    if rep_id is not None and rep_id != principal.rep_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a rep logs touches as themselves ({principal.rep_id})")
    return principal.rep_id


def store_scope(principal: Principal) -> Scope:
    """The rows a caller's lists and exports hold: a rep's own, a manager's teams', else everyone's."""
    if principal.role is Role.rep:
        return Scope(rep_id=principal.rep_id or "")
    if principal.role is Role.manager:
        return Scope(teams=principal.teams)
    return Scope()
