"""initial schema

Tables: leads, touchpoints, score_changes, stage_changes, teams, reps, assignments, followups,
emails, playbook_versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from store.models: a migration must not change when the
# models do.
TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("last_name", sa.String(), nullable=True),
        sa.Column("company", sa.String(), nullable=True),
        sa.Column("title", sa.String(), nullable=True),
        sa.Column("company_size", sa.Integer(), nullable=True),
        sa.Column("industry", sa.String(), nullable=True),
        sa.Column("country", sa.String(), nullable=True),
        sa.Column("source", sa.String(), nullable=True),
        sa.Column("utm_source", sa.String(), nullable=True),
        sa.Column("utm_medium", sa.String(), nullable=True),
        sa.Column("utm_campaign", sa.String(), nullable=True),
        sa.Column("utm_term", sa.String(), nullable=True),
        sa.Column("utm_content", sa.String(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("grade", sa.String(), nullable=True),
        sa.Column("owner_rep_id", sa.String(), nullable=True),
        sa.Column("owner_team", sa.String(), nullable=True),
        sa.Column("sla_status", sa.String(), nullable=True),
        sa.Column("sla_due_at", TS, nullable=True),
        sa.Column("playbook_version", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
    )
    for column in ("created_at", "email", "owner_rep_id", "score", "sla_status", "stage"):
        op.create_index(op.f(f"ix_leads_{column}"), "leads", [column])

    op.create_table(
        "touchpoints",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_touchpoints")),
        sa.UniqueConstraint("event_id", name=op.f("uq_touchpoints_event_id")),
    )
    op.create_index(op.f("ix_touchpoints_lead_id"), "touchpoints", ["lead_id"])
    op.create_index("ix_touchpoints_lead_id_occurred_at", "touchpoints", ["lead_id", "occurred_at"])

    op.create_table(
        "score_changes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("score_after", sa.Float(), nullable=False),
        sa.Column("rule_id", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_changes")),
        sa.UniqueConstraint("lead_id", "seq", name=op.f("uq_score_changes_lead_id_seq")),
    )

    op.create_table(
        "stage_changes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("from_stage", sa.String(), nullable=False),
        sa.Column("to_stage", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_changes")),
        sa.UniqueConstraint("lead_id", "seq", name=op.f("uq_stage_changes_lead_id_seq")),
    )

    op.create_table(
        "teams",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("manager_name", sa.String(), nullable=True),
        sa.Column("manager_email", sa.String(), nullable=True),
        sa.Column("rr_cursor", sa.String(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_teams")),
    )

    op.create_table(
        "reps",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("team_key", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(["team_key"], ["teams.key"], name=op.f("fk_reps_team_key_teams")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reps")),
    )
    op.create_index(op.f("ix_reps_team_key"), "reps", ["team_key"])

    op.create_table(
        "assignments",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("team_key", sa.String(), nullable=False),
        sa.Column("rep_id", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("assigned_at", TS, nullable=False),
        sa.Column("open", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_assignments")),
    )
    op.create_index(op.f("ix_assignments_lead_id"), "assignments", ["lead_id"])
    op.create_index("ix_assignments_rep_id_open", "assignments", ["rep_id", "open"])

    op.create_table(
        "followups",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("rep_id", sa.String(), nullable=False),
        sa.Column("team_key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("policy_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("remind_at", TS, nullable=True),
        sa.Column("reminded_at", TS, nullable=True),
        sa.Column("escalated_at", TS, nullable=True),
        sa.Column("met_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_followups")),
    )
    for column in ("due_at", "lead_id", "status"):
        op.create_index(op.f(f"ix_followups_{column}"), "followups", [column])

    op.create_table(
        "emails",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("to_addr", sa.String(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_emails")),
    )
    op.create_index(op.f("ix_emails_lead_id"), "emails", ["lead_id"])

    op.create_table(
        "playbook_versions",
        sa.Column("version", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_playbook_versions")),
        sa.UniqueConstraint("hash", name=op.f("uq_playbook_versions_hash")),
    )


def downgrade() -> None:
    # Indexes go with their tables.
    for table in (
        "playbook_versions",
        "emails",
        "followups",
        "assignments",
        "reps",
        "teams",
        "stage_changes",
        "score_changes",
        "touchpoints",
        "leads",
    ):
        op.drop_table(table)
