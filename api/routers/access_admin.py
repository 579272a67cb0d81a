"""Admin: API keys with roles and the users who sign in to the pages (the API owns both: one writer here
and in the CLI, ``leadflow keys`` / ``leadflow users``). A key is shown once, in the answer that creates it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.deps import Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.roles import allow
from api.schemas import TIME_RANGE, Time
from rules.access import Role
from store import access

router = APIRouter(
    prefix="/v1/admin", tags=["admin: keys and users"], dependencies=[allow(Role.admin)], responses=V1_ERRORS
)
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
KeyId = Annotated[str, Path(pattern=r"^ak_[0-9a-f]{8}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")]


class Scoped(BaseModel):
    """A rep's key or login names the rep; a manager's the teams they manage."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    rep_id: Slug | None = Field(default=None, description="role rep: the rep whose leads it reaches (required)")
    teams: list[Slug] = Field(default_factory=list, max_length=100, description="role manager: the teams (required)")

    @model_validator(mode="after")
    def _scope_fits_role(self) -> Scoped:
        if self.role is Role.rep and self.rep_id is None:
            raise ValueError("a rep's key or login needs rep_id (the rep whose leads it reaches)")
        if self.role is Role.manager and not self.teams:
            raise ValueError("a manager's key or login needs teams (the teams they manage)")
        if self.role is not Role.rep and self.rep_id is not None:
            raise ValueError("rep_id is for the rep role only")
        if self.role is not Role.manager and self.teams:
            raise ValueError("teams are for the manager role only")
        return self


class ApiKeyIn(Scoped):
    name: Name
    expires_at: Time | None = Field(default=None, description=f"when it stops working ({TIME_RANGE}); none: never")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="instead of expires_at")

    @model_validator(mode="after")
    def _one_expiry(self) -> ApiKeyIn:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self


@dataclass(frozen=True)
class ApiKeyOut(access.ApiKeyInfo):
    """A key as the store describes it; ``key`` only in the answer that creates it (it is not stored)."""

    key: str | None = None


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyOut, responses=BODY_ERRORS)
async def create_key(body: ApiKeyIn, session: Session) -> ApiKeyOut:
    """A new API key with one role. Shown once: only its SHA-256 is stored."""
    expires = body.expires_at
    if body.expires_in_days is not None:
        expires = datetime.now(UTC) + timedelta(days=body.expires_in_days)
    info, key = await access.create_api_key(
        session, body.name, body.role, rep_id=body.rep_id, teams=body.teams, expires_at=expires
    )
    return ApiKeyOut(**vars(info), key=key)


@router.get("/keys", response_model=list[ApiKeyOut])
async def list_keys(session: Session) -> list[ApiKeyOut]:
    """Every key (revoked and expired ones too), never the keys themselves."""
    return [ApiKeyOut(**vars(info)) for info in await access.list_api_keys(session)]


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(404))
async def revoke_key(key_id: KeyId, session: Session, state: State) -> None:
    """Revoke a key: it stops working at once in this process, within seconds in the others."""
    if not await access.revoke_api_key(session, key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active key {key_id}")
    state.key_cache.clear()


class UserIn(Scoped):
    password: Annotated[str, StringConstraints(min_length=12, max_length=200)] = Field(
        description="at least 12 characters; kept only as a salted scrypt hash"
    )


@router.put("/users/{username}", response_model=access.UserInfo, responses=BODY_ERRORS)
async def put_user(username: Annotated[Username, Path()], body: UserIn, session: Session) -> access.UserInfo:
    """Create a user of the pages, or replace one's password, role and scope (their sessions end)."""
    return await access.put_user(session, username, body.password, body.role, rep_id=body.rep_id, teams=body.teams)


@router.get("/users", response_model=list[access.UserInfo])
async def list_users(session: Session) -> list[access.UserInfo]:
    return await access.list_users(session)


@router.delete("/users/{username}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(404))
async def disable_user(username: Annotated[Username, Path()], session: Session) -> None:
    """Disable a user and end their sessions (kept: the audit log names them)."""
    if not await access.disable_user(session, username):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active user {username}")
