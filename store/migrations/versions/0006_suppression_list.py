"""The suppression list an operator works with: whole domains, plain addresses where they must be read.

Adds to the erasure work's ``suppressions`` table (one list, not a second one): ``scope`` (address or
domain), ``address`` (the plain address or domain; NULL for erased people, who stay a keyed hash only),
``note`` and ``lead_id``.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("suppressions") as table:
        table.add_column(sa.Column("scope", sa.String(), nullable=False, server_default="address"))
        table.add_column(sa.Column("address", sa.String(), nullable=True))
        table.add_column(sa.Column("note", sa.String(), nullable=True))
        table.add_column(sa.Column("lead_id", sa.String(), nullable=True))
    op.create_index(op.f("ix_suppressions_reason"), "suppressions", ["reason"])
    op.create_index(op.f("ix_suppressions_created_at"), "suppressions", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_suppressions_created_at"), table_name="suppressions")
    op.drop_index(op.f("ix_suppressions_reason"), table_name="suppressions")
    with op.batch_alter_table("suppressions") as table:
        for column in ("lead_id", "note", "address", "scope"):
            table.drop_column(column)
