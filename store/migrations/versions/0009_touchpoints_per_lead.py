"""Touchpoints written by the lead's workflow: unique per (lead, event id) rather than per event id, so a
client id reused by two people never drops one person's event, and a retried projection is ignored.
(The touchpoint source fields and the lead's original/latest source came with 0007.)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("touchpoints") as batch:
        batch.drop_constraint("uq_touchpoints_event_id", type_="unique")
        batch.create_unique_constraint("uq_touchpoints_lead_id_event_id", ["lead_id", "event_id"])


def downgrade() -> None:
    with op.batch_alter_table("touchpoints") as batch:
        batch.drop_constraint("uq_touchpoints_lead_id_event_id", type_="unique")
        batch.create_unique_constraint("uq_touchpoints_event_id", ["event_id"])
