"""Sales hand-off in the read model: the lead's acceptance (SAL) and outcome (won deal, lost or disqualified
reason), projected by the lead workflow (rules/sales.py) so pages and reports read them.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("acceptance_status", sa.String()),
    ("acceptance_due_at", UTCDateTime()),
    ("outcome", sa.String()),
    ("outcome_at", UTCDateTime()),
    ("outcome_by", sa.Text()),
    ("won_product", sa.Text()),
    ("close_date", sa.Date()),
    ("disqualify_reason", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.create_index("ix_leads_acceptance_status", ["acceptance_status"])
        batch.create_index("ix_leads_outcome", ["outcome"])
        batch.create_index("ix_leads_outcome_at", ["outcome_at"])


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_outcome_at")
        batch.drop_index("ix_leads_outcome")
        batch.drop_index("ix_leads_acceptance_status")
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
