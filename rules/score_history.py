"""A long-lived lead's score changes, bounded: the latest ones explained one by one, older ones carried forward.

Every scored event appends a ``ScoreChange`` to ``LeadState.score_changes``, which travels through
continue-as-new and every query: unbounded, it grows a busy lead's history without end. The store already
keeps every change (score_changes table, written by projection, once per ``(lead_id, seq)``), so the state
needs only the latest ``KEPT_SCORE_CHANGES`` and one explained line for the rest.

Folding keeps four things true, so it changes no decision and no projection:
- the score is still the sum of the explained changes (a folded change's points are the sum of its parts);
- only changes the store has already received are folded (``projected_through``): the workflow projects
  changes with a seq above its watermark, and folded lines carry a seq at or below it, so they are never
  projected and no change is lost or projected twice;
- the last change keeps its seq, so the next one continues the numbering;
- decay (rules/engine.py ``_decay``) measures from the latest change that is not a decay step: that
  change's time and score are kept exactly, as the "carried forward" line, and the decay steps after it
  become one decay line; the latest changes (the view shows 20, notifications 5) are untouched.
Pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from rules.model import ScoreChange

# The explained changes a lead keeps in its state; older ones are in the store's score history.
KEPT_SCORE_CHANGES = 200
CARRIED_FORWARD = "carried_forward"
# rules/engine.py scores decay steps under this rule id and measures decay from the latest other change.
DECAY_RULE = "decay"


def fold_score_changes(
    changes: Sequence[ScoreChange], projected_through: int, keep: int = KEPT_SCORE_CHANGES
) -> list[ScoreChange]:
    """``changes`` with everything older than the latest ``keep`` and already projected (seq at most
    ``projected_through``) folded into at most two lines: one carried-forward change ending at the latest
    change that was not a decay step, one decay change for the decay steps after it."""
    foldable = 0
    for change in changes[: max(len(changes) - keep, 0)]:
        if change.seq > projected_through:
            break
        foldable += 1
    old, kept = list(changes[:foldable]), list(changes[foldable:])
    anchor = max((i for i, change in enumerate(old) if change.rule_id != DECAY_RULE), default=-1)
    head, decays = old[: anchor + 1], old[anchor + 1 :]
    folded = []
    if head:
        folded.append(head[0] if len(head) == 1 else _carried(head))
    if decays:
        folded.append(decays[0] if len(decays) == 1 else _decays(decays, head[-1].seq if head else 0))
    return folded + kept


def _carried(changes: list[ScoreChange]) -> ScoreChange:
    return _folded(changes, CARRIED_FORWARD, f"changes #1-#{changes[-1].seq}")


def _decays(changes: list[ScoreChange], after_seq: int) -> ScoreChange:
    return _folded(changes, DECAY_RULE, f"decay steps #{after_seq + 1}-#{changes[-1].seq}")


def _folded(changes: list[ScoreChange], rule_id: str, which: str) -> ScoreChange:
    """One change standing for ``changes``: their points, the last one's time and score."""
    last = changes[-1]
    return ScoreChange(
        seq=last.seq,
        at=last.at,
        points=round(sum(c.points for c in changes), 2),
        score_after=last.score_after,
        rule_id=rule_id,
        reason=f"{which} carried forward (each is in the lead's score history)",
    )
