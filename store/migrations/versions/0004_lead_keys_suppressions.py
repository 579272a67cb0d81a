"""lead_keys (per-lead data keys for the payload codec, wrapped by the master key) and suppressions.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import BigIntId, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_keys",
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("master_key_id", sa.String(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_lead_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_lead_keys_key_id")),
    )
    op.create_index(op.f("ix_lead_keys_master_key_id"), "lead_keys", ["master_key_id"])
    op.create_table(
        "suppressions",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("address_hash", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("address_hash", name=op.f("uq_suppressions_address_hash")),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index(op.f("ix_lead_keys_master_key_id"), table_name="lead_keys")
    op.drop_table("lead_keys")
