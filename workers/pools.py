"""Build the Temporal workers of a pool: each polls only its own task queues, with its own concurrency."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from activities.bookkeeping import BookkeepingActivities
from activities.context import ActivityContext
from activities.evaluate import EvaluateActivities
from activities.generation import GenerationActivities
from activities.knowledge import KnowledgeActivities
from activities.optimize import OptimizeActivities
from activities.registry import RegistryActivities
from activities.releases import ReleaseActivities
from activities.retention import RetentionActivities
from activities.retraining import RetrainingActivities
from activities.suites import SuiteActivities
from activities.train import TrainActivities
from core.settings import (
    POOL_TASK_QUEUES,
    TASK_QUEUE_BOOKKEEPING,
    TASK_QUEUE_EVALUATE,
    TASK_QUEUE_KNOWLEDGE,
    TASK_QUEUE_OPTIMIZE,
    TASK_QUEUE_TRAIN,
    TASK_QUEUE_WORKFLOWS,
    Settings,
)
from observability.temporal import TaskContextInterceptor, metrics_runtime
from services.retention import ensure_schedule
from temporal_client import connect
from workflows.dataset_generation import DatasetGenerationWorkflow
from workflows.fine_tuning import FineTuningWorkflow
from workflows.knowledge_ingestion import KnowledgeIngestionWorkflow
from workflows.promotion_gate import PromotionGateWorkflow
from workflows.release import ReleaseWorkflow
from workflows.retention import RetentionWorkflow
from workflows.retraining import RetrainWorkflow
from workflows.suite_run import SuiteRunWorkflow

logger = logging.getLogger(__name__)
POOLS = tuple(POOL_TASK_QUEUES)
# (the client's tracing interceptor comes first: each activity's span exists when its context is set)
INTERCEPTORS = [TaskContextInterceptor()]
WORKFLOWS = [
    FineTuningWorkflow,
    KnowledgeIngestionWorkflow,
    DatasetGenerationWorkflow,
    RetrainWorkflow,
    PromotionGateWorkflow,
    RetentionWorkflow,
    SuiteRunWorkflow,
    ReleaseWorkflow,
]


def activities_by_queue(ctx: ActivityContext, train: TrainActivities | None = None) -> dict[str, list]:
    bookkeeping, knowledge, generation, registry, suites = (
        BookkeepingActivities(ctx),
        KnowledgeActivities(ctx),
        GenerationActivities(ctx),
        RegistryActivities(ctx),
        SuiteActivities(ctx),
    )
    return {
        # the database projections run as local activities of the workflow worker
        TASK_QUEUE_WORKFLOWS: [
            bookkeeping.record_progress,
            knowledge.record_knowledge_base,
            generation.record_dataset,
            registry.record_gate,
        ],
        TASK_QUEUE_BOOKKEEPING: [
            bookkeeping.compensate_iteration,
            bookkeeping.build_report,
            *retraining_activities(ctx),
            registry.register_final_adapter,
            registry.conclude_promotion,
            RetentionActivities(ctx).prune_expired_records,
            suites.fail_suite_run,
            *release_activities(ctx),
        ],
        TASK_QUEUE_OPTIMIZE: [OptimizeActivities(ctx).optimize_dataset],
        TASK_QUEUE_TRAIN: [(train or TrainActivities(ctx)).train_adapter],
        # each runs a model
        TASK_QUEUE_EVALUATE: [
            EvaluateActivities(ctx).evaluate_adapter,
            generation.generate_dataset,
            generation.regenerate_generated_rows,
            registry.evaluate_for_promotion,
            suites.run_suite,
            suites.shadow_release_suites,
        ],
        TASK_QUEUE_KNOWLEDGE: [knowledge.build_knowledge_index, knowledge.mark_stale_rows],
    }


def release_activities(ctx: ActivityContext) -> list:
    releases = ReleaseActivities(ctx)
    return [releases.decide_release, releases.analyse_release, releases.judge_release_suites]


def retraining_activities(ctx: ActivityContext) -> list:
    retraining = RetrainingActivities(ctx)
    return [retraining.notify_followers, retraining.task_state, retraining.start_incremental_task]


def concurrency(settings: Settings, queue: str) -> int:
    return {
        TASK_QUEUE_BOOKKEEPING: settings.bookkeeping_concurrency,
        TASK_QUEUE_OPTIMIZE: settings.optimize_concurrency,
        TASK_QUEUE_TRAIN: settings.train_concurrency,
        TASK_QUEUE_EVALUATE: settings.evaluate_concurrency,
        TASK_QUEUE_KNOWLEDGE: settings.knowledge_concurrency,
    }.get(queue, 1)


def build_workers(
    client: Client, pool: str, ctx: ActivityContext, activities: dict[str, list] | None = None
) -> list[Worker]:
    """One Worker per task queue of `pool`. `activities` replaces the real ones (tests of orchestration)."""
    if pool not in POOL_TASK_QUEUES:
        raise ValueError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
    activities = activities or activities_by_queue(ctx)
    if {TASK_QUEUE_TRAIN, TASK_QUEUE_EVALUATE} & set(POOL_TASK_QUEUES[pool]):
        from ml.base_model import warm_up

        warm_up()
    workers = []
    for queue in POOL_TASK_QUEUES[pool]:
        if queue == TASK_QUEUE_WORKFLOWS:
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    workflows=WORKFLOWS,
                    activities=activities[queue],
                    interceptors=INTERCEPTORS,
                    max_concurrent_workflow_tasks=ctx.settings.workflow_task_concurrency,
                    activity_executor=ThreadPoolExecutor(max_workers=ctx.settings.bookkeeping_concurrency),
                )
            )
            continue
        limit = concurrency(ctx.settings, queue)
        workers.append(
            Worker(
                client,
                task_queue=queue,
                activities=activities[queue],
                max_concurrent_activities=limit,
                interceptors=INTERCEPTORS,
                activity_executor=ThreadPoolExecutor(max_workers=limit),
                graceful_shutdown_timeout=timedelta(seconds=30),
                # heartbeats carry the checkpoint a retried attempt resumes from: send them every 2 s, not every
                # 0.8 x timeout
                max_heartbeat_throttle_interval=timedelta(seconds=2),
                default_heartbeat_throttle_interval=timedelta(seconds=2),
            )
        )
    return workers


async def run_pool(pool: str, settings: Settings) -> None:
    """Connect to Temporal and run the pool's workers until cancelled, serving their metrics on the pool's port."""
    client = await connect(settings, pool_runtime(pool, settings))
    workers = build_workers(client, pool, ActivityContext.from_settings(settings))
    if TASK_QUEUE_WORKFLOWS in POOL_TASK_QUEUES[pool]:
        await ensure_schedule(client, settings)
    await asyncio.gather(*(w.run() for w in workers))


def pool_runtime(pool: str, settings: Settings) -> Runtime | None:
    """A runtime serving the pool's metrics on its port; none (and a warning) if the port is taken: metrics must not
    stop work."""
    port = settings.worker_metrics_port_for(pool)
    if not port:
        return None
    try:
        return metrics_runtime(f"{settings.worker_metrics_host}:{port}")
    except ValueError as exc:  # "Failed starting Prometheus exporter: Address already in use"
        logger.warning("worker pool %s serves no metrics: %s:%s: %s", pool, settings.worker_metrics_host, port, exc)
        return None
