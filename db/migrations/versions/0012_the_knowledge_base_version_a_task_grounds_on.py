"""the knowledge-base version a task grounds on: ml_tasks.knowledge_base_version

A change notice goes only to the tasks that grounded on an older version. Existing tasks have none recorded (NULL),
so they are notified as before.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ml_tasks", sa.Column("knowledge_base_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ml_tasks", schema=None) as batch_op:
        batch_op.drop_column("knowledge_base_version")
