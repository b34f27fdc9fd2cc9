"""focused contexts: ml_tasks.context_statements and model_versions.context_statements

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ml_tasks", sa.Column("context_statements", sa.Integer(), nullable=True))
    op.add_column("model_versions", sa.Column("context_statements", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("context_statements")
    with op.batch_alter_table("ml_tasks", schema=None) as batch_op:
        batch_op.drop_column("context_statements")
