"""Knowledge bases as the ingestion tests drive them: a new one, a document uploaded as the API would, a wait on
its status, and the real activities with the knowledge activities of a (possibly instrumented) instance."""

from __future__ import annotations

import io

from temporalio.client import Client

from activities.context import ActivityContext
from activities.knowledge import KnowledgeActivities
from core.settings import TASK_QUEUE_KNOWLEDGE, TASK_QUEUE_WORKFLOWS
from db.models import KnowledgeBase
from services import knowledge as service
from testkit.factories import row
from testkit.polling import poll_until
from workers.pools import activities_by_queue


def activities_with(ctx: ActivityContext, knowledge: KnowledgeActivities) -> dict[str, list]:
    """The real activities of every queue, the knowledge ones bound to `knowledge`."""
    activities = activities_by_queue(ctx)
    activities[TASK_QUEUE_WORKFLOWS] = [
        activities[TASK_QUEUE_WORKFLOWS][0],
        knowledge.record_knowledge_base,
        *activities[TASK_QUEUE_WORKFLOWS][2:],
    ]
    activities[TASK_QUEUE_KNOWLEDGE] = [knowledge.build_knowledge_index, knowledge.mark_stale_rows]
    return activities


def new_kb(ctx: ActivityContext) -> KnowledgeBase:
    with ctx.sessions() as session:
        return service.create_knowledge_base(
            session, ctx.settings, name="guide", description=None, org_id="org", created_by=None
        )


async def upload_document(ctx: ActivityContext, client: Client, kb: KnowledgeBase, filename: str, data: bytes) -> str:
    """Store a document in the knowledge base and ask its ingestion to index it, as the API does; its id."""
    with ctx.sessions() as session:
        stored = service.store_document(
            session, ctx.store, ctx.settings, kb, stream=io.BytesIO(data), filename=filename, created_by=None
        )

    async def temporal() -> Client:
        return client

    await service.request_build(temporal, ctx.settings, kb, [stored.document.id])
    service.keep_upload(ctx.store, stored)
    return stored.document.id


async def wait_for_kb(
    ctx: ActivityContext, kb_id: str, status: str, version: int | None = None, timeout: float = 120
) -> KnowledgeBase:
    """Poll the knowledge base until it has `status` (at `version` or later, when given)."""

    return await poll_until(
        lambda: row(ctx, KnowledgeBase, kb_id),
        lambda row: row.status == status and (version is None or row.version >= version),
        timeout=timeout,
        what=f"knowledge base {kb_id} {status} at version {version}",
    )
