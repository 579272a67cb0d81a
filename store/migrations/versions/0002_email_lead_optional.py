"""emails.lead_id becomes optional: the managers' digest concerns a team, not a lead.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("emails") as batch:
        batch.alter_column("lead_id", existing_type=sa.String(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE emails SET lead_id = '' WHERE lead_id IS NULL")
    with op.batch_alter_table("emails") as batch:
        batch.alter_column("lead_id", existing_type=sa.String(), nullable=False)
