"""question answering history: every completion the serving process answered, with its feedback

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qa_history",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("conversation_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("model_version_id", sa.String(length=64), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(length=16), nullable=False),
        sa.Column("knowledge_base_id", sa.String(length=64), nullable=True),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("rating", sa.String(length=8), nullable=True),
        sa.Column("corrected_answer", sa.Text(), nullable=True),
        sa.Column("feedback_by", sa.String(length=64), nullable=True),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("qa_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qa_history_conversation_id"), ["conversation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_qa_history_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_qa_history_model"), ["model"], unique=False)
        batch_op.create_index(batch_op.f("ix_qa_history_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_qa_history_rating"), ["rating"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("qa_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qa_history_rating"))
        batch_op.drop_index(batch_op.f("ix_qa_history_org_id"))
        batch_op.drop_index(batch_op.f("ix_qa_history_model"))
        batch_op.drop_index(batch_op.f("ix_qa_history_created_at"))
        batch_op.drop_index(batch_op.f("ix_qa_history_conversation_id"))

    op.drop_table("qa_history")
