"""Playbook upgrades for running leads: start a migration (dry run by default) and follow its progress.

The request is checked here, before any lead is asked: the target version exists, the step map names real
steps, and every step leads of a known older version can wait at either exists in the target or is mapped
(else 422 with the list). The migration itself runs as a PlaybookMigrationWorkflow, never in the request.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppState, Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, ApiError, documented
from api.roles import allow
from api.routers.playbooks import Version
from rules.access import Role
from rules.migration import MigrationOptions, UnmappedStep, step_map_problems, unmapped_steps
from rules.playbook import CompiledPlaybook
from runtime import compile_published
from store import playbook_migration, playbooks
from workflows.playbook_migration import MigrationProgress, MigrationStart, PlaybookMigrationWorkflow

# Marketers publish playbooks, so they move the running leads to them (admin may too).
router = APIRouter(tags=["playbooks"], dependencies=[allow(Role.marketer)], responses=V1_ERRORS)
MIGRATION_ID_PATTERN = r"^playbook-migration-[0-9a-f]{32}$"
MigrationId = Annotated[str, Path(pattern=MIGRATION_ID_PATTERN, description="as returned by the POST")]
StepRef = Annotated[str, Field(min_length=3, max_length=401)]
# Leads read from the store per page of a migration run (the run continues as new between pages if long).
PAGE_SIZE = 100
# Compiled published versions (immutable): the static check compiles each older version once per process.
_COMPILED: dict[str, CompiledPlaybook] = {}


class MigrateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = Field(default=True, description="only list what would change (the default)")
    step_map: dict[StepRef, StepRef] = Field(
        default_factory=dict,
        max_length=500,
        description='old "journey/step" -> new "journey/step", or "exit" to leave the journey; '
        "needed for every step leads can wait at that the target no longer has",
    )
    recompute_score: bool = Field(default=False, description="replay each lead's events through the new rules")
    concurrency: int = Field(default=8, ge=1, le=64, description="leads asked at once")


async def _compiled(state: AppState, session: Session, version: str) -> CompiledPlaybook | None:
    """A version leads may run: a published one, or the playbook file's; None when this process cannot know it
    (an older playbook file): those leads are still checked one by one when asked."""
    if version in _COMPILED:
        return _COMPILED[version]
    if version == state.playbook.bundle.version:
        return state.playbook.compiled
    if not (version.startswith("v") and version[1:].isdigit()):
        return None
    row = await playbooks.get(session, int(version[1:]))
    if row is None:
        return None
    compiled = (await asyncio.to_thread(compile_published, row["document"], version)).compiled
    _COMPILED[version] = compiled
    return compiled


@router.post(
    "/v1/playbooks/{version}:migrate", status_code=status.HTTP_202_ACCEPTED, responses=BODY_ERRORS | documented(404)
)
async def migrate_playbook(version: Version, body: MigrateIn, state: State, session: Session) -> dict[str, Any]:
    """Move the running leads on other versions to published version ``version``: each lead switches at a
    safe point of its workflow, keeping its journey positions (by step id, or through ``step_map``) and its
    remaining waits. ``dry_run`` (the default) lists what would change and changes nothing. Answers the
    migration id at once; ``GET /v1/playbooks/migrations/{id}`` shows the progress and each lead's plan."""
    target_version = f"v{version}"
    target = await _compiled(state, session, target_version)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no published playbook version {version}")
    problems = step_map_problems(target, body.step_map)
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "step_map: " + "; ".join(problems[:20]))
    in_flight = await playbook_migration.versions_in_flight(session, target_version)
    unmapped: list[UnmappedStep] = []
    unchecked = []
    for from_version in sorted(in_flight):
        old = await _compiled(state, session, from_version)
        if old is None:
            unchecked.append(from_version)
        else:
            unmapped += unmapped_steps(old, target, body.step_map)
    if unmapped:
        listed = ", ".join(f"{u.key} ({u.version})" for u in unmapped[:10])
        raise ApiError(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{target_version} no longer has journey steps that running leads can wait at: {listed}; "
            'map each in step_map ("journey/step": "journey/new_step", or "exit")',
            unmapped_steps=[{"from_version": u.version, "journey": u.journey_id, "step": u.step_id} for u in unmapped],
        )
    migration_id = f"playbook-migration-{uuid.uuid4().hex}"
    options = MigrationOptions(target_version, dict(body.step_map), body.recompute_score)
    start = MigrationStart(migration_id, version, options, body.dry_run, body.concurrency, PAGE_SIZE)
    async with state.temporal_call() as client:
        await client.start_workflow(
            PlaybookMigrationWorkflow.run, start, id=migration_id, task_queue=state.settings.task_queue
        )
    return {
        "migration_id": migration_id,
        "target_version": target_version,
        "dry_run": body.dry_run,
        "leads_on_other_versions": in_flight,
        # Versions this process cannot read (an older playbook file): their leads are checked one by one.
        "unchecked_versions": unchecked,
        "progress": f"/v1/playbooks/migrations/{migration_id}",
    }


@router.get("/v1/playbooks/migrations/{migration_id}", responses=documented(404))
async def migration_progress(migration_id: MigrationId, state: State) -> dict[str, Any]:
    """A migration's progress: leads asked, counts per status (planned, migrated, current, refused, skipped,
    failed), refused leads per unmapped step, and each lead's plan (the first 200, then problems)."""
    try:
        async with state.temporal_call() as client:
            handle = client.get_workflow_handle(migration_id)
            progress: MigrationProgress = await handle.query(PlaybookMigrationWorkflow.progress)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no migration {migration_id}") from exc
        raise
    return asdict(progress)
