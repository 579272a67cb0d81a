"""email_feedback (bounce and complaint reports), emails.variant and the lookups the email report needs.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_feedback",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("address_hash", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("email_key", sa.String(), nullable=True),
        sa.Column("lead_id", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("suppressed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_feedback")),
    )
    op.create_index(
        "ix_email_feedback_address_hash_occurred_at", "email_feedback", ["address_hash", "occurred_at"]
    )
    op.create_index(op.f("ix_email_feedback_email_key"), "email_feedback", ["email_key"])
    op.create_index(op.f("ix_email_feedback_lead_id"), "email_feedback", ["lead_id"])
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("variant", sa.String(), nullable=True))
        batch.create_index(batch.f("ix_emails_message_id"), ["message_id"])
    op.create_index(op.f("ix_touchpoints_type"), "touchpoints", ["type"])


def downgrade() -> None:
    op.drop_index(op.f("ix_touchpoints_type"), table_name="touchpoints")
    with op.batch_alter_table("emails") as batch:
        batch.drop_index(batch.f("ix_emails_message_id"))
        batch.drop_column("variant")
    op.drop_table("email_feedback")
