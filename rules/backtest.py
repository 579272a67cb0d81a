"""Backtest: replay real, stored lead histories through the live and a draft playbook and report the
difference (MQLs and SQLs gained or lost, leads routed elsewhere, emails that would go out) before the
marketer publishes. Pure: the caller loads the histories; the same ``decide`` loop as the simulator runs
each lead twice on a virtual clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.assignment import TeamSnapshot
from rules.model import EventsReceived, Input, LeadUpserted, TouchLogged, TrackedEvent
from rules.playbook import CompiledPlaybook
from rules.simulate import Deadline, Run, run_timeline
from rules.team_book import TeamBook

MAX_LISTED = 100  # leads listed per difference; the counts cover all


@dataclass
class LeadHistory:
    lead_id: str
    attributes: dict[str, Any]
    created_at: datetime
    events: list[TrackedEvent] = field(default_factory=list)
    touches: list[TouchLogged] = field(default_factory=list)


@dataclass
class Outcome:
    stage: str
    reached: list[str]
    team: str | None
    emails: Counter[str]


@dataclass
class BacktestReport:
    leads: int
    live_version: str
    draft_version: str
    # stage -> {"live": leads that reached it, "draft": ..., "change": draft - live}
    reached: dict[str, dict[str, int]]
    final_stage: dict[str, dict[str, int]]
    emails: dict[str, dict[str, int]]
    routed_elsewhere: int
    routed_elsewhere_leads: list[dict[str, Any]]
    stage_changed: int
    stage_changed_leads: list[dict[str, Any]]


def _timeline(history: LeadHistory) -> list[tuple[datetime, int, Input]]:
    items: list[tuple[datetime, int, Input]] = [(history.created_at, 0, LeadUpserted(dict(history.attributes)))]
    items += [(max(e.at, history.created_at), 1, EventsReceived([e])) for e in history.events]
    items += [
        (max(t.at, history.created_at), 2, TouchLogged(t.touch_id, t.kind, t.at, t.rep_id)) for t in history.touches
    ]
    return sorted(items, key=lambda item: (item[0], item[1]))


def _outcome(run: Run) -> Outcome:
    state = run.state
    reached = ["new"] + [c.to_stage for c in state.stage_changes]
    team = state.owner.rep.team if state.owner else state.queued_team
    return Outcome(state.stage, reached, team, Counter(e["template"] for e in run.emails))


def _compare(counts_live: Counter[str], counts_draft: Counter[str], keys: list[str]) -> dict[str, dict[str, int]]:
    names = keys + sorted(set(counts_live) | set(counts_draft) - set(keys))
    return {
        k: {"live": counts_live[k], "draft": counts_draft[k], "change": counts_draft[k] - counts_live[k]} for k in names
    }


def backtest(
    live: CompiledPlaybook,
    draft: CompiledPlaybook,
    histories: list[LeadHistory],
    end: datetime,
    *,
    teams: Sequence[TeamSnapshot] = (),
    deadline: Deadline | None = None,
) -> BacktestReport:
    """Leads route through ``teams`` (the store's, as production would; two stand-in reps per team when none
    are given), one book per playbook shared by the leads in order, with the production choice.
    Raises :class:`rules.simulate.BudgetExceeded` once ``deadline()`` answers true."""
    reached_live: Counter[str] = Counter()
    reached_draft: Counter[str] = Counter()
    final_live: Counter[str] = Counter()
    final_draft: Counter[str] = Counter()
    emails_live: Counter[str] = Counter()
    emails_draft: Counter[str] = Counter()
    elsewhere: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    books = {"live": TeamBook(teams, stand_ins=not teams), "draft": TeamBook(teams, stand_ins=not teams)}
    for history in histories:
        timeline = _timeline(history)
        a, b = (
            _outcome(
                run_timeline(pb, history.lead_id, timeline, end, books[side], record_trace=False, deadline=deadline)
            )
            for side, pb in (("live", live), ("draft", draft))
        )
        reached_live.update(set(a.reached))
        reached_draft.update(set(b.reached))
        final_live[a.stage] += 1
        final_draft[b.stage] += 1
        emails_live.update(a.emails)
        emails_draft.update(b.emails)
        if a.team != b.team:
            elsewhere.append({"lead_id": history.lead_id, "live_team": a.team, "draft_team": b.team})
        if a.stage != b.stage:
            changed.append({"lead_id": history.lead_id, "live_stage": a.stage, "draft_stage": b.stage})
    stages = live.stage_order + [s for s in live.model.stages.side if s not in live.stage_order]
    emails = _compare(emails_live, emails_draft, [])
    emails["total"] = {
        "live": sum(emails_live.values()),
        "draft": sum(emails_draft.values()),
        "change": sum(emails_draft.values()) - sum(emails_live.values()),
    }
    return BacktestReport(
        leads=len(histories),
        live_version=live.version,
        draft_version=draft.version,
        reached=_compare(reached_live, reached_draft, stages),
        final_stage=_compare(final_live, final_draft, stages),
        emails=emails,
        routed_elsewhere=len(elsewhere),
        routed_elsewhere_leads=elsewhere[:MAX_LISTED],
        stage_changed=len(changed),
        stage_changed_leads=changed[:MAX_LISTED],
    )
