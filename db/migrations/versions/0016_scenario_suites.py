"""scenario suites: suites (one row per version), suite_runs, registered_models.required_suites

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("blocking", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("cases", sa.JSON(), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("org_id", "name", "version", name="uq_suites_org_name_version"),
    )
    op.create_index("ix_suites_org_id", "suites", ["org_id"])
    op.create_table(
        "suite_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("suite_id", sa.String(64), sa.ForeignKey("suites.id"), nullable=False),
        sa.Column("suite_name", sa.String(100), nullable=False),
        sa.Column("suite_version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("gate_id", sa.String(64), nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_suite_runs_org_id", "suite_runs", ["org_id"])
    op.create_index("ix_suite_runs_suite_id", "suite_runs", ["suite_id"])
    op.create_index("ix_suite_runs_gate_id", "suite_runs", ["gate_id"])
    op.add_column("registered_models", sa.Column("required_suites", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.drop_column("required_suites")
    op.drop_index("ix_suite_runs_gate_id", table_name="suite_runs")
    op.drop_index("ix_suite_runs_suite_id", table_name="suite_runs")
    op.drop_index("ix_suite_runs_org_id", table_name="suite_runs")
    op.drop_table("suite_runs")
    op.drop_index("ix_suites_org_id", table_name="suites")
    op.drop_table("suites")
