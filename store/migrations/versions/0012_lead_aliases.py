"""lead_aliases: merged duplicates and changed emails resolve to the surviving lead.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_aliases",
        sa.Column("alias_id", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("alias_id", name=op.f("pk_lead_aliases")),
    )
    op.create_index(op.f("ix_lead_aliases_lead_id"), "lead_aliases", ["lead_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_lead_aliases_lead_id"), table_name="lead_aliases")
    op.drop_table("lead_aliases")
