"""write_keys (tracking credentials), inbound_sources (forms and webhook senders), visitor_links.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "write_keys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_write_keys_key_hash")),
    )
    op.create_table(
        "inbound_sources",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_nonce", sa.String(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "id", name=op.f("pk_inbound_sources")),
    )
    op.create_table(
        "visitor_links",
        sa.Column("visitor_id", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("linked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("visitor_id", name=op.f("pk_visitor_links")),
    )
    op.create_index(op.f("ix_visitor_links_lead_id"), "visitor_links", ["lead_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_visitor_links_lead_id"), table_name="visitor_links")
    op.drop_table("visitor_links")
    op.drop_table("inbound_sources")
    op.drop_table("write_keys")
