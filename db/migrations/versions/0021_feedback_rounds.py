"""feedback rounds: ml_tasks.corrections_dataset_id and corrections_dataset_version (the dataset of corrected answers
an incremental task trains on besides its parent's training split)

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ml_tasks", sa.Column("corrections_dataset_id", sa.String(64), nullable=True))
    op.add_column("ml_tasks", sa.Column("corrections_dataset_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ml_tasks", schema=None) as batch_op:
        batch_op.drop_column("corrections_dataset_version")
        batch_op.drop_column("corrections_dataset_id")
