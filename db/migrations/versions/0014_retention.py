"""retention: organizations.qa_retention_days and event_retention_days, and retention_runs (what each pass pruned)

Both are NULL (keep everything) for existing organizations.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("qa_retention_days", sa.Integer(), nullable=True))
    op.add_column("organizations", sa.Column("event_retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("qa_entries", sa.Integer(), nullable=False),
        sa.Column("task_events", sa.Integer(), nullable=False),
        sa.Column("qa_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events_before", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_retention_runs_org_id", "retention_runs", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_retention_runs_org_id", table_name="retention_runs")
    op.drop_table("retention_runs")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("event_retention_days")
        batch_op.drop_column("qa_retention_days")
