"""The playbook workspace page (marketers): the live version, history and a diff of two versions; a draft
edited in the browser, validated with each problem shown at its YAML line; the simulator on a sample lead and
events with its trace; the backtest; publish with a note. Every action runs the same route functions as
/v1/playbooks* (api/routers/playbooks.py), so the page and the API cannot disagree."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import ValidationError

from api.deps import Caller, Session, State
from api.errors import ApiError
from api.page_kit import render
from api.roles import allow, page_form
from api.routers import playbooks as playbook_routes
from rules.access import Role
from rules.simulate import Scenario
from settings import ROOT
from store import playbooks

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[allow(Role.marketer)])
# The simulator's sample to start from: the seed story (read once; it ships with the code).
SAMPLE_TEXT = (ROOT / "playbooks" / "examples" / "seed_story.yaml").read_text(encoding="utf-8")
Action = Literal["validate", "simulate", "backtest", "publish"]
ACTIONS: tuple[str, ...] = ("validate", "simulate", "backtest", "publish")
MAX_SCENARIO_CHARS = 64 * 1024
Version = Annotated[int | None, Query(ge=1, le=2**31 - 1)]


async def live_text(state: State, session: Session) -> tuple[str, str]:
    """(version label, YAML text) of the playbook new leads start with."""
    number = await playbooks.latest_number(session)
    if number is not None:
        row = await playbooks.get(session, number)
        if row is not None:
            return f"v{number}", row["document"]
    current = await state.current_playbook()
    text = await asyncio.to_thread(Path(state.settings.playbook_path).read_text, encoding="utf-8")
    return current.bundle.version, text


def version_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    lines = difflib.unified_diff(
        old["document"].splitlines(keepends=True),
        new["document"].splitlines(keepends=True),
        fromfile=f"v{old['version']}",
        tofile=f"v{new['version']}",
    )
    return "".join(lines)


async def _context(state: State, session: Session, old: int | None, new: int | None) -> dict[str, Any]:
    label, text = await live_text(state, session)
    versions = await playbooks.list_versions(session)
    numbers = sorted(v["version"] for v in versions)
    new = new or (numbers[-1] if numbers else None)
    old = old or (max((n for n in numbers if new is not None and n < new), default=None))
    diff, diff_error = None, None
    if old is not None and new is not None:
        a, b = await playbooks.get(session, old), await playbooks.get(session, new)
        if a is None or b is None:
            diff_error = f"no published version {old if a is None else new}: pick one from the history"
        else:
            diff = version_diff(a, b)
    return {
        "live_version": label,
        "live_text": text,
        "versions": sorted(versions, key=lambda v: v["version"], reverse=True),
        "diff_from": old,
        "diff_to": new,
        "diff": diff,
        "diff_error": diff_error,
        "draft": text,
        "scenario": SAMPLE_TEXT,
        "note": "",
        "days": 90,
        "result": None,
        "action": None,
    }


@router.get("/workspace")
async def workspace_page(
    request: Request, state: State, session: Session, diff_from: Version = None, diff_to: Version = None
) -> Response:
    context = await _context(state, session, diff_from, diff_to)
    return render(request, "workspace.html", context, status_code=404 if context["diff_error"] else 200)


def _scenario(text: str) -> Scenario:
    """The sample as YAML (or JSON); a problem is a 422 naming the field."""
    if len(text) > MAX_SCENARIO_CHARS:
        raise HTTPException(422, f"the sample is longer than {MAX_SCENARIO_CHARS} characters")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HTTPException(422, f"the sample is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise HTTPException(422, "the sample must be a mapping with lead, events, touches, run_for")
    data = {k: v for k, v in data.items() if k != "expect"}  # the page shows what happens, it checks nothing
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "sample"
        raise HTTPException(422, f"the sample's {where}: {problem['msg']}") from exc


async def _run(action: str, form: dict[str, str], state: State, session: Session, caller: Caller) -> Any:
    draft = form.get("playbook", "")
    if not draft.strip():
        raise HTTPException(422, "the draft is empty: paste or edit a playbook")
    if len(draft) > playbook_routes.MAX_PLAYBOOK_CHARS:
        raise HTTPException(422, f"the draft is longer than {playbook_routes.MAX_PLAYBOOK_CHARS} characters")
    if action == "validate":
        return await playbook_routes.validate_playbook(playbook_routes.DraftIn(playbook=draft), state, session)
    if action == "simulate":
        sample = playbook_routes.SimulateIn(playbook=draft, scenario=_scenario(form.get("scenario", "")))
        return await playbook_routes.simulate_playbook(sample, state, session)
    if action == "backtest":
        days = form.get("days", "90")
        if not days.isdigit() or not 1 <= int(days) <= 730:
            raise HTTPException(422, "days must be a whole number from 1 to 730")
        replay = playbook_routes.BacktestIn(playbook=draft, days=int(days))
        return await playbook_routes.backtest_playbook(replay, state, session)
    note = form.get("note", "").strip()
    if not note:
        raise HTTPException(422, "say what changed in the note before publishing")
    if len(note) > 2000:
        raise HTTPException(422, "the note is longer than 2000 characters")
    body = playbook_routes.PublishIn(playbook=draft, author=caller.name[:200], note=note)
    return await playbook_routes.publish_playbook(body, state, session, Response())


@router.post("/workspace")
async def workspace_action(request: Request, state: State, session: Session, caller: Caller) -> Response:
    """validate | simulate | backtest | publish the draft in the form (its CSRF token was checked first)."""
    form = await page_form(request)
    action = form.get("action", "")
    context = await _context(state, session, None, None)
    context.update(draft=form.get("playbook", ""), scenario=form.get("scenario", context["scenario"]),
                   note=form.get("note", ""), days=form.get("days", "90"), action=action)  # fmt: skip
    if action not in ACTIONS:
        context["error"] = f"action must be one of {', '.join(ACTIONS)}"
        return render(request, "workspace.html", context, status_code=422)
    try:
        context["result"] = await _run(action, form, state, session, caller)
    except HTTPException as exc:
        context["error"] = str(exc.detail)
        context["issues"] = exc.particulars.get("issues", []) if isinstance(exc, ApiError) else []
        return render(request, "workspace.html", _with_lines(context), status_code=exc.status_code)
    if action == "publish":  # the live version and history changed
        fresh = await _context(state, session, None, None)
        context.update({k: fresh[k] for k in ("live_version", "live_text", "versions", "diff_from", "diff_to", "diff")})
    return render(request, "workspace.html", context)


def _with_lines(context: dict[str, Any]) -> dict[str, Any]:
    """The draft's lines, each with the problems found at it, so the page shows every message at its line."""
    at: dict[int, list[str]] = {}
    for issue in context.get("issues", []):
        if issue.get("line"):
            at.setdefault(int(issue["line"]), []).append(f"{issue['path']}: {issue['message']}")
    context["draft_lines"] = [
        {"number": n, "text": text, "issues": at.get(n, [])}
        for n, text in enumerate(context["draft"].splitlines(), 1)
    ] if at else []  # fmt: skip
    return context
