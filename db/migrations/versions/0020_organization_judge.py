"""an organization's judge: organizations.judge_url, judge_model and judge_api_key_sealed

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("judge_url", sa.String(length=500), nullable=True))
    op.add_column("organizations", sa.Column("judge_model", sa.String(length=200), nullable=True))
    op.add_column("organizations", sa.Column("judge_api_key_sealed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("judge_api_key_sealed")
        batch_op.drop_column("judge_model")
        batch_op.drop_column("judge_url")
