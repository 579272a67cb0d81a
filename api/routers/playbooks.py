"""Playbook workspace: the active playbook, validation with located errors, and the simulator."""

from __future__ import annotations

import asyncio
import difflib
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from activities.rendering import EmailRenderer
from api.deps import Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, ApiError, documented
from api.roles import allow
from rules.access import Role
from rules.backtest import LeadHistory, backtest
from rules.model import TouchLogged, TrackedEvent
from rules.playbook import CompiledPlaybook, PlaybookError, load_playbook_text
from rules.simulate import BudgetExceeded, Deadline, Scenario, result_as_dict, simulate
from store import assignments, playbooks, repo, reports

router = APIRouter(tags=["playbooks"], dependencies=[allow(Role.marketer)], responses=V1_ERRORS)
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="a published version number")]
MAX_PLAYBOOK_CHARS = 256 * 1024
# Simulations and backtests run in a worker thread (the event loop keeps answering) and stop at this budget.
SIMULATION_BUDGET_SECONDS = 10.0
BACKTEST_BUDGET_SECONDS = 60.0


def _deadline(seconds: float) -> Deadline:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() > end


def _over_budget(what: str, seconds: float, hint: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"the {what} took longer than its budget of {seconds:g} s and was stopped; {hint}",
    )


class DraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playbook: str = Field(min_length=1, max_length=MAX_PLAYBOOK_CHARS, description="the playbook YAML")


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playbook: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PLAYBOOK_CHARS,
        description="a draft playbook (YAML); the active one when omitted",
    )
    scenario: Scenario


def issues_response(exc: PlaybookError) -> HTTPException:
    issues = [{"line": i.line, "path": i.path, "message": i.message} for i in exc.issues]
    first = f" (line {issues[0]['line']}: {issues[0]['message']})" if issues else ""
    return ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the playbook has problems{first}", issues=issues)


async def compile_draft(state: State, session: Session, text: str) -> CompiledPlaybook:
    teams = {t["key"] for t in await repo.list_teams(session)}
    templates = EmailRenderer(state.settings.templates_dir).available()
    try:
        # Off the event loop: a large draft takes a moment to parse and check.
        return await asyncio.to_thread(load_playbook_text, text, templates=templates, teams=teams)
    except PlaybookError as exc:
        raise issues_response(exc) from exc


class PublishIn(DraftIn):
    author: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class BacktestIn(DraftIn):
    days: int = Field(default=90, ge=1, le=730, description="replay leads created in the last N days")
    limit: int = Field(default=2000, ge=1, le=20000, description="at most this many leads (newest first)")


def _histories(rows: list[dict[str, Any]]) -> list[LeadHistory]:
    out = []
    for row in rows:
        events, touches = [], []
        for t in row["touchpoints"]:
            if t["type"].startswith("touch."):
                touches.append(TouchLogged(t["event_id"], t["type"].removeprefix("touch."), t["at"]))
            else:
                events.append(TrackedEvent(t["event_id"], t["type"], t["at"], t["url"], t["name"], t["properties"]))
        out.append(LeadHistory(row["lead_id"], row["attributes"], row["created_at"], events, touches))
    return out


@router.post("/v1/playbooks:backtest", responses=BODY_ERRORS)
async def backtest_playbook(body: BacktestIn, state: State, session: Session) -> dict[str, Any]:
    """Replay the stored histories of recent leads through the live playbook and the draft; report the
    difference (stages reached, routing, emails) before publishing."""
    draft = await compile_draft(state, session, body.playbook)
    live = (await state.current_playbook()).compiled
    now = datetime.now(UTC)
    rows = await reports.lead_histories(session, since=now - timedelta(days=body.days), limit=body.limit)
    teams = await assignments.team_snapshots(session)
    started = time.perf_counter()
    budget = BACKTEST_BUDGET_SECONDS
    try:
        report = await asyncio.to_thread(
            backtest, live, draft, _histories(rows), now, teams=teams, deadline=_deadline(budget)
        )
    except BudgetExceeded as exc:
        raise _over_budget("backtest", budget, "replay fewer days or fewer leads (days, limit)") from exc
    return {**asdict(report), "days": body.days, "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}


@router.get("/v1/playbook")
async def active_playbook(state: State) -> dict[str, Any]:
    """The playbook new leads start with: the latest published version, else the playbook file."""
    current = await state.current_playbook()
    return {"version": current.bundle.version, "hash": current.compiled.hash, "document": current.bundle.document}


@router.post("/v1/playbooks", status_code=status.HTTP_201_CREATED, responses=BODY_ERRORS)
async def publish_playbook(body: PublishIn, state: State, session: Session, response: Response) -> dict[str, Any]:
    """Validate and publish a draft as the next immutable version; new leads start on it at once."""
    pb = await compile_draft(state, session, body.playbook)
    row, created = await playbooks.publish(
        session, document=body.playbook, hash=pb.hash, author=body.author, note=body.note
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return {**row, "created": created}


@router.get("/v1/playbooks")
async def list_playbooks(state: State, session: Session) -> dict[str, Any]:
    current = await state.current_playbook()
    return {"active": current.bundle.version, "items": await playbooks.list_versions(session)}


async def _version(session: Session, version: int) -> dict[str, Any]:
    row = await playbooks.get(session, version)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no published playbook version {version}")
    return row


# {version:int}: only a number is a version here, so /v1/playbooks/1:migrate (POST only) is not read as one.
@router.get("/v1/playbooks/{version:int}", responses=documented(404))
async def get_playbook(version: Version, session: Session) -> dict[str, Any]:
    return await _version(session, version)


@router.get("/v1/playbooks/{old}/diff/{new}", responses=documented(404))
async def diff_playbooks(old: Version, new: Version, session: Session) -> dict[str, Any]:
    """A unified diff of two published versions' YAML."""
    a, b = await _version(session, old), await _version(session, new)
    lines = difflib.unified_diff(
        a["document"].splitlines(keepends=True),
        b["document"].splitlines(keepends=True),
        fromfile=f"v{old}",
        tofile=f"v{new}",
    )
    return {"from": old, "to": new, "diff": "".join(lines)}


@router.post("/v1/playbooks:validate", responses=BODY_ERRORS)
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


@router.post("/v1/playbooks:simulate", responses=BODY_ERRORS)
async def simulate_playbook(body: SimulateIn, state: State, session: Session) -> dict[str, Any]:
    """Run the real decision loop on a virtual clock: the full trace, no Temporal, no side effect."""
    pb = (
        await compile_draft(state, session, body.playbook)
        if body.playbook
        else (await state.current_playbook()).compiled
    )
    # A scenario without reps routes through the real teams (their reps, loads and cursors).
    teams = await assignments.team_snapshots(session) if not body.scenario.reps else []
    budget = SIMULATION_BUDGET_SECONDS
    try:
        result = await asyncio.to_thread(simulate, pb, body.scenario, teams=teams, deadline=_deadline(budget))
    except BudgetExceeded as exc:
        raise _over_budget("simulation", budget, "shorten run_for or send fewer events") from exc
    except (ValueError, OverflowError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the scenario cannot run: {exc}") from exc
    return result_as_dict(result)
