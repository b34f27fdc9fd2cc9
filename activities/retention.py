"""prune_expired_records: the retention pass over every organization that set limits (services.retention)."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities.context import ActivityContext
from schemas.workflow_io import PrunedCounts, PruneExpiredInput, RetentionResult
from services.retention import prune_expired


class RetentionActivities:
    def __init__(self, ctx: ActivityContext):
        self.ctx = ctx

    @activity.defn(name="prune_expired_records")
    def prune_expired_records(self, inp: PruneExpiredInput) -> RetentionResult:
        with self.ctx.sessions() as session:
            pruned = prune_expired(session, datetime.fromisoformat(inp.now))
        activity.logger.info("retention pruned %s", [(p.org_id, p.qa_entries, p.task_events) for p in pruned])
        return RetentionResult([PrunedCounts(p.org_id, p.qa_entries, p.task_events) for p in pruned])
