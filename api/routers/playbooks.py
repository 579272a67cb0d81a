"""Playbook workspace: the active playbook, validation with located errors, and the simulator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from activities.rendering import EmailRenderer
from api.deps import Authorized, Session, State
from rules.playbook import CompiledPlaybook, PlaybookError, load_playbook_text
from rules.simulate import Scenario, result_as_dict, simulate
from store import repo

router = APIRouter(tags=["playbooks"], dependencies=[Authorized])
MAX_PLAYBOOK_CHARS = 256 * 1024


class DraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playbook: str = Field(max_length=MAX_PLAYBOOK_CHARS, description="the playbook YAML")


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playbook: str | None = Field(
        default=None, max_length=MAX_PLAYBOOK_CHARS, description="a draft playbook (YAML); the active one when omitted"
    )
    scenario: Scenario


def issues_response(exc: PlaybookError) -> HTTPException:
    issues = [{"line": i.line, "path": i.path, "message": i.message} for i in exc.issues]
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, {"message": "the playbook has problems", "issues": issues}
    )


async def compile_draft(state: State, session: Session, text: str) -> CompiledPlaybook:
    teams = {t["key"] for t in await repo.list_teams(session)}
    templates = EmailRenderer(state.settings.templates_dir).available()
    try:
        return load_playbook_text(text, templates=templates, teams=teams)
    except PlaybookError as exc:
        raise issues_response(exc) from exc


@router.get("/v1/playbook")
async def active_playbook(state: State) -> dict[str, Any]:
    return {"version": state.playbook.bundle.version, "document": state.playbook.bundle.document}


@router.post("/v1/playbooks:validate")
async def validate_playbook(body: DraftIn, state: State, session: Session) -> dict[str, Any]:
    """Validate a draft as a whole: every problem at once, each with its YAML line."""
    pb = await compile_draft(state, session, body.playbook)
    model = pb.model
    return {
        "valid": True,
        "hash": pb.hash,
        "summary": {
            "scoring_rules": len(model.scoring.rules),
            "grading_rules": len(model.grading.rules),
            "stages": model.stages.order,
            "routing_rules": len(model.routing.rules),
            "sla_policies": [p.id for p in model.sla.policies],
            "journeys": [j.id for j in model.journeys],
        },
    }


@router.post("/v1/playbooks:simulate")
async def simulate_playbook(body: SimulateIn, state: State, session: Session) -> dict[str, Any]:
    """Run the real decision loop on a virtual clock: the full trace, no Temporal, no side effect."""
    pb = await compile_draft(state, session, body.playbook) if body.playbook else state.playbook.compiled
    try:
        result = simulate(pb, body.scenario)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the scenario cannot run: {exc}") from exc
    return result_as_dict(result)
