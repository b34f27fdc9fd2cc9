"""tasks that use a knowledge base: ml_tasks.knowledge_base_id and retrieval_top_k

Columns are added in place (ALTER TABLE ... ADD COLUMN), not by a batch copy of ml_tasks, which SQLite would
refuse while task_executions point at it. Existing tasks use no knowledge base and keep the default top-k of 3.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite adds a reference only inline, with the column
        op.execute(
            "ALTER TABLE ml_tasks ADD COLUMN knowledge_base_id VARCHAR(64) REFERENCES knowledge_bases (id) ON DELETE "
            "SET NULL"
        )
    else:
        op.add_column("ml_tasks", sa.Column("knowledge_base_id", sa.String(length=64), nullable=True))
        op.create_foreign_key(
            "fk_ml_tasks_knowledge_base_id",
            "ml_tasks",
            "knowledge_bases",
            ["knowledge_base_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.add_column("ml_tasks", sa.Column("retrieval_top_k", sa.Integer(), nullable=False, server_default="3"))
    op.create_index("ix_ml_tasks_knowledge_base_id", "ml_tasks", ["knowledge_base_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ml_tasks_knowledge_base_id", table_name="ml_tasks")
    with op.batch_alter_table("ml_tasks", schema=None) as batch_op:
        batch_op.drop_column("retrieval_top_k")
        batch_op.drop_column("knowledge_base_id")
