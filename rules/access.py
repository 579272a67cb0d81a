"""Who may do what: the roles of API keys and users, and which leads a rep or a manager may see.

Pure (no I/O): the API resolves a key or a session to a ``Principal`` and asks these functions. What each
role is for (issue 11): ``tracking`` posts events and forms only; ``rep`` works their own leads;
``manager`` their teams' leads, follow-ups, reports and reassignment; ``marketer`` the playbook, templates,
journeys, simulation, backtests and reports; ``admin`` everything (keys, users, teams, settings, erasure).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class Role(StrEnum):
    tracking = "tracking"
    rep = "rep"
    manager = "manager"
    marketer = "marketer"
    admin = "admin"


ROLES: tuple[Role, ...] = tuple(Role)
PrincipalKind = Literal["key", "user", "admin-key"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key (``key``), a signed-in user (``user``), or the configured admin key
    (``admin-key``, LEADFLOW_API_KEY). ``rep_id`` scopes a rep; ``teams`` scope a manager."""

    kind: PrincipalKind
    id: str
    name: str
    role: Role
    rep_id: str | None = None
    teams: frozenset[str] = field(default_factory=frozenset)


# The configured admin key (LEADFLOW_API_KEY): it has no stored row.
ADMIN_KEY_PRINCIPAL = Principal("admin-key", "admin-key", "LEADFLOW_API_KEY", Role.admin)


def allowed(principal: Principal, roles: frozenset[Role]) -> bool:
    """Admin may call every route; anyone else only the routes that name their role."""
    return principal.role is Role.admin or principal.role in roles


def sees_every_lead(principal: Principal) -> bool:
    """Reps and managers are scoped to their leads; marketers, admins and tracking are not (tracking keys
    only reach routes that read nothing back)."""
    return principal.role not in (Role.rep, Role.manager)


def may_see_lead(principal: Principal, owner_rep_id: str | None, owner_team: str | None) -> bool:
    """A rep sees the leads they own; a manager the leads owned by their teams (or routed to them)."""
    if sees_every_lead(principal):
        return True
    if principal.role is Role.rep:
        return principal.rep_id is not None and owner_rep_id == principal.rep_id
    return owner_team is not None and owner_team in principal.teams


def denial(roles: frozenset[Role]) -> str:
    """The 403 message: which roles may call the route."""
    named = sorted({*roles, Role.admin}, key=ROLES.index)
    return f"this needs a key or login with the role {' or '.join(r.value for r in named)}"


_EMAIL = re.compile(r"([^\s@/?&=]{1,64})@([^\s@/?&=]+\.[^\s@/?&=]+)")


def mask_email(text: str) -> str:
    """``ann.lee@example.com`` -> ``a***@example.com``: enough to tell records apart, not to mail anyone."""
    return _EMAIL.sub(lambda m: f"{m.group(1)[0]}***@{m.group(2)}", text)
