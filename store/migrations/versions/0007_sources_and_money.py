"""Sources as data and money: touchpoint source fields, the lead's original/latest source and category,
the won deal, and the costs table the reports divide by.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import Money, UTCDateTime

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
        batch.add_column(sa.Column("won_amount", Money, nullable=True))
        batch.add_column(sa.Column("won_currency", sa.String(3), nullable=True))
        batch.add_column(sa.Column("won_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("lost_reason", sa.Text(), nullable=True))
        batch.create_index("ix_leads_original_source", ["original_source"])
        batch.create_index("ix_leads_won_at", ["won_at"])
    with op.batch_alter_table("touchpoints") as batch:
        for name in _TOUCH_FIELDS:
            batch.add_column(sa.Column(name, sa.String(), nullable=True))
    op.create_table(
        "source_costs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("campaign", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_costs")),
        sa.UniqueConstraint(
            "source",
            "campaign",
            "period_start",
            "period_end",
            "currency",
            name=op.f("uq_source_costs_source_campaign_period_start_period_end_currency"),
        ),
    )
    op.create_index("ix_source_costs_source", "source_costs", ["source"])
    op.create_index("ix_source_costs_period_start", "source_costs", ["period_start"])


def downgrade() -> None:
    op.drop_index("ix_source_costs_period_start", table_name="source_costs")
    op.drop_index("ix_source_costs_source", table_name="source_costs")
    op.drop_table("source_costs")
    with op.batch_alter_table("touchpoints") as batch:
        for name in reversed(_TOUCH_FIELDS):
            batch.drop_column(name)
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_won_at")
        batch.drop_index("ix_leads_original_source")
        for name in (
            "lost_reason",
            "won_at",
            "won_currency",
            "won_amount",
            "source_category",
            "latest_source",
            "original_source",
        ):
            batch.drop_column(name)
