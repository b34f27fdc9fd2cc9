"""incremental tasks: ml_tasks.retrain_on_change and parent_task_id

Added in place, like 0005 (SQLite takes a reference only inline, with its column). Existing tasks follow nothing.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ml_tasks", sa.Column("retrain_on_change", sa.Boolean(), nullable=False, server_default=sa.false()))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE ml_tasks ADD COLUMN parent_task_id VARCHAR(64) REFERENCES ml_tasks (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("ml_tasks", sa.Column("parent_task_id", sa.String(length=64), nullable=True))
        op.create_foreign_key(
            "fk_ml_tasks_parent_task_id", "ml_tasks", "ml_tasks", ["parent_task_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index("ix_ml_tasks_parent_task_id", "ml_tasks", ["parent_task_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ml_tasks_parent_task_id", table_name="ml_tasks")
    with op.batch_alter_table("ml_tasks", schema=None) as batch_op:
        batch_op.drop_column("parent_task_id")
        batch_op.drop_column("retrain_on_change")
