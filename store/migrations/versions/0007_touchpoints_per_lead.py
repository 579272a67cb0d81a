"""Touchpoints written by the lead's workflow: unique per (lead, event id) rather than per event id, so a
client id reused by two people never drops one person's event, and a retried projection is ignored.
The reports work (branch reports-money) had not landed by 07:00: the source columns it adds live here (same
names and types); whichever lands second drops its copy.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

_TOUCH_FIELDS = ("channel", "source", "medium", "campaign", "content", "term")


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("original_source", sa.String(), nullable=True))
        batch.add_column(sa.Column("latest_source", sa.String(), nullable=True))
        batch.add_column(sa.Column("source_category", sa.String(), nullable=True))
        batch.create_index("ix_leads_original_source", ["original_source"])
    with op.batch_alter_table("touchpoints") as batch:
        for name in _TOUCH_FIELDS:
            batch.add_column(sa.Column(name, sa.String(), nullable=True))
        batch.drop_constraint("uq_touchpoints_event_id", type_="unique")
        batch.create_unique_constraint("uq_touchpoints_lead_id_event_id", ["lead_id", "event_id"])


def downgrade() -> None:
    with op.batch_alter_table("touchpoints") as batch:
        batch.drop_constraint("uq_touchpoints_lead_id_event_id", type_="unique")
        batch.create_unique_constraint("uq_touchpoints_event_id", ["event_id"])
        for name in reversed(_TOUCH_FIELDS):
            batch.drop_column(name)
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_original_source")
        for name in ("source_category", "latest_source", "original_source"):
            batch.drop_column(name)
