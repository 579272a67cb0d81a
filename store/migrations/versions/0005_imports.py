"""CSV imports: imports (options, resume point, counts), import_leads (first line per lead), import_issues
(the report).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("consent_basis", sa.String(), nullable=True),
        sa.Column("default_country", sa.String(), nullable=True),
        sa.Column("column_map", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("lines_done", sa.Integer(), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("merged_existing", sa.Integer(), nullable=False),
        sa.Column("merged_duplicate", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("warnings", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_table(
        "import_leads",
        sa.Column("import_id", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("existed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("import_id", "lead_id", name=op.f("pk_import_leads")),
    )
    op.create_table(
        "import_issues",
        sa.Column("import_id", sa.String(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("lead_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("import_id", "line", name=op.f("pk_import_issues")),
    )


def downgrade() -> None:
    op.drop_table("import_issues")
    op.drop_table("import_leads")
    op.drop_table("imports")
