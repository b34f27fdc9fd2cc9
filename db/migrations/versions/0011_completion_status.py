"""the status of each completion in the question-answering history: completed, failed or cancelled, with its error

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("qa_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), server_default="completed", nullable=False))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.alter_column("finish_reason", existing_type=sa.String(length=16), nullable=True)
        batch_op.create_index(batch_op.f("ix_qa_history_status"), ["status"], unique=False)


def downgrade() -> None:
    op.execute("UPDATE qa_history SET finish_reason = status WHERE finish_reason IS NULL")
    with op.batch_alter_table("qa_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qa_history_status"))
        batch_op.alter_column("finish_reason", existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column("error")
        batch_op.drop_column("status")
