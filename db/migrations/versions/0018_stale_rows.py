"""stale rows: the dataset rows a new version of a knowledge-base document contradicts

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stale_rows",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column(
            "knowledge_base_id",
            sa.String(64),
            sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("knowledge_base_version", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(64), nullable=False),
        sa.Column("document_name", sa.String(255), nullable=False),
        sa.Column("document_version", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("row_id", sa.String(64), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("old_value", sa.String(300), nullable=False),
        sa.Column("new_value", sa.String(300), nullable=True),
        sa.Column("old_sentence", sa.Text(), nullable=False),
        sa.Column("new_sentence", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "dataset_id", "row_id", "document_id", "document_version", name="uq_stale_rows_row_document_version"
        ),
    )
    op.create_index("ix_stale_rows_org_id", "stale_rows", ["org_id"])
    op.create_index("ix_stale_rows_knowledge_base_id", "stale_rows", ["knowledge_base_id"])
    op.create_index("ix_stale_rows_dataset_id", "stale_rows", ["dataset_id"])


def downgrade() -> None:
    op.drop_table("stale_rows")
