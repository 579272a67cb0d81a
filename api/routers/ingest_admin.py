"""Admin endpoints for the ingest doors: tracking write keys, form and webhook configurations.

The API owns these records (one writer): the admin API key writes them here or through the CLI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, StringConstraints

from api.deps import Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.roles import allow
from api.routers.forms import InboundConfig, SourceId
from api.routers.webhooks import webhook_secret
from rules.access import Role
from store import ingest

router = APIRouter(prefix="/v1/admin", tags=["admin: ingest"], dependencies=[allow(Role.admin)], responses=V1_ERRORS)


class WriteKeyIn(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class WriteKeyOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    key: str | None = None  # only in the answer that creates it


@router.post("/write-keys", status_code=status.HTTP_201_CREATED, response_model=WriteKeyOut, responses=BODY_ERRORS)
async def create_write_key(body: WriteKeyIn, session: Session) -> WriteKeyOut:
    """A tracking write key (it can only post to the Segment-compatible routes). Shown once: keep it."""
    info, key = await ingest.create_write_key(session, body.name)
    return WriteKeyOut(**vars(info), key=key)


@router.get("/write-keys", response_model=list[WriteKeyOut])
async def list_write_keys(session: Session) -> list[WriteKeyOut]:
    return [WriteKeyOut(**vars(info)) for info in await ingest.list_write_keys(session)]


@router.delete("/write-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(404))
async def revoke_write_key(key_id: str, session: Session) -> None:
    if not await ingest.revoke_write_key(session, key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active write key {key_id}")


class SourceOut(BaseModel):
    id: str
    config: dict[str, Any]
    secret: str | None = None  # webhooks: only when created or rotated


@router.put("/forms/{form_id}", response_model=SourceOut, responses=BODY_ERRORS)
async def put_form(form_id: SourceId, body: InboundConfig, session: Session) -> SourceOut:
    """Create or replace a form's field mapping, consent box and declared source."""
    await ingest.put_source(session, "form", form_id, body.model_dump(exclude_none=True), new_secret=False)
    return SourceOut(id=form_id, config=body.model_dump(exclude_none=True))


@router.get("/forms", response_model=list[SourceOut])
async def list_forms(session: Session) -> list[SourceOut]:
    return [SourceOut(id=row.id, config=row.config) for row in await ingest.list_sources(session, "form")]


@router.delete("/forms/{form_id}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(404))
async def delete_form(form_id: SourceId, session: Session) -> None:
    if not await ingest.delete_source(session, "form", form_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no form {form_id}")


@router.put("/webhooks/{source}", response_model=SourceOut, responses=BODY_ERRORS)
async def put_webhook(
    source: SourceId,
    body: InboundConfig,
    session: Session,
    state: State,
    rotate: Annotated[bool, Query(description="issue a new signing secret (the old one stops working)")] = False,
) -> SourceOut:
    """Create or replace a webhook sender's mapping; the signing secret is in the answer when it is new."""
    existed = await ingest.get_source(session, "webhook", source) is not None
    config = body.model_dump(exclude_none=True, exclude={"redirect_url"})
    nonce = await ingest.put_source(session, "webhook", source, config, new_secret=rotate)
    secret = webhook_secret(state.id_key, source, nonce) if nonce and (rotate or not existed) else None
    return SourceOut(id=source, config=config, secret=secret)


@router.get("/webhooks", response_model=list[SourceOut])
async def list_webhooks(session: Session) -> list[SourceOut]:
    return [SourceOut(id=row.id, config=row.config) for row in await ingest.list_sources(session, "webhook")]


@router.delete("/webhooks/{source}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(404))
async def delete_webhook(source: SourceId, session: Session) -> None:
    if not await ingest.delete_source(session, "webhook", source):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook source {source}")
