"""releases: releases, release_decisions, qa_history.release_id and release_arm, suite_runs.release_id

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(64), sa.ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("candidate_version", sa.Integer(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("candidate_weight", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_releases_org_id", "releases", ["org_id"])
    op.create_index("ix_releases_model_id", "releases", ["model_id"])
    op.create_index("ix_releases_status", "releases", ["status"])
    op.create_table(
        "release_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("candidate_weight", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=True),
        sa.Column("actor_user_id", sa.String(64), nullable=True),
        sa.Column("actor_key_id", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("release_id", "key", name="uq_release_decisions_release_key"),
    )
    op.create_index("ix_release_decisions_release_id", "release_decisions", ["release_id"])
    op.add_column("qa_history", sa.Column("release_id", sa.String(64), nullable=True))
    op.add_column("qa_history", sa.Column("release_arm", sa.String(16), nullable=True))
    op.create_index("ix_qa_history_release_id", "qa_history", ["release_id"])
    op.add_column("suite_runs", sa.Column("release_id", sa.String(64), nullable=True))
    op.create_index("ix_suite_runs_release_id", "suite_runs", ["release_id"])


def downgrade() -> None:
    op.drop_index("ix_suite_runs_release_id", table_name="suite_runs")
    with op.batch_alter_table("suite_runs", schema=None) as batch_op:
        batch_op.drop_column("release_id")
    op.drop_index("ix_qa_history_release_id", table_name="qa_history")
    with op.batch_alter_table("qa_history", schema=None) as batch_op:
        batch_op.drop_column("release_arm")
        batch_op.drop_column("release_id")
    op.drop_index("ix_release_decisions_release_id", table_name="release_decisions")
    op.drop_table("release_decisions")
    op.drop_index("ix_releases_status", table_name="releases")
    op.drop_index("ix_releases_model_id", table_name="releases")
    op.drop_index("ix_releases_org_id", table_name="releases")
    op.drop_table("releases")
