"""datasets generated from knowledge bases: status, error, source knowledge base and version, generation log

Columns are added in place; existing datasets are uploads, READY.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("status", sa.String(length=16), nullable=False, server_default="READY"))
    op.add_column("datasets", sa.Column("error", sa.Text(), nullable=True))
    op.add_column("datasets", sa.Column("source_knowledge_base_id", sa.String(length=64), nullable=True))
    op.add_column("datasets", sa.Column("source_knowledge_base_version", sa.Integer(), nullable=True))
    op.add_column("datasets", sa.Column("generation_log", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        for column in (
            "generation_log",
            "source_knowledge_base_version",
            "source_knowledge_base_id",
            "error",
            "status",
        ):
            batch_op.drop_column(column)
