"""one name for each thing: the organization is `org_id`, stored objects are `*_key`

datasets.owner, ml_tasks.owner -> org_id; datasets.storage_path -> storage_key;
ml_tasks.latest_model_path -> latest_adapter_key,
latest_evaluation_path -> latest_evaluation_key, report_path -> report_key; task_executions.model_path ->
adapter_key, evaluation_path -> evaluation_key. Values are unchanged (they were always organization ids
and object-store keys); the owner indexes are renamed with their columns.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RENAMES = {
    "datasets": {"owner": "org_id", "storage_path": "storage_key"},
    "ml_tasks": {
        "owner": "org_id",
        "latest_model_path": "latest_adapter_key",
        "latest_evaluation_path": "latest_evaluation_key",
        "report_path": "report_key",
    },
    "task_executions": {"model_path": "adapter_key", "evaluation_path": "evaluation_key"},
}
INDEXED = ("datasets", "ml_tasks")  # each has an index on its organization column


def _rename(forward: bool) -> None:
    old_org, new_org = ("owner", "org_id") if forward else ("org_id", "owner")
    for table in INDEXED:
        op.drop_index(f"ix_{table}_{old_org}", table_name=table)
    # ALTER TABLE ... RENAME COLUMN in place (SQLite >= 3.25, PostgreSQL): a batch copy of the table would trip the
    # foreign keys that point at datasets and ml_tasks
    for table, columns in RENAMES.items():
        for old, new in columns.items():
            op.alter_column(table, old if forward else new, new_column_name=new if forward else old)
    for table in INDEXED:
        op.create_index(f"ix_{table}_{new_org}", table, [new_org], unique=False)


def upgrade() -> None:
    _rename(forward=True)


def downgrade() -> None:
    _rename(forward=False)
