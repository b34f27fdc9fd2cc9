"""Dataset rows that a knowledge base's new document versions contradict: find them (`facts.staleness`), mark them
stale in a new version of each dataset that grounds on the knowledge base, record them, and list them with their state.

A stale row is tagged `stale` and excluded (`"excluded": true`), so the optimizer drops it from training and from
every split, and an incremental task that continues a parent drops it from the splits it inherits (`follow_head`).
A user resolves it with an ordinary annotation of the dataset: confirming removes the tag and the exclusion; correcting
also changes the answer or the checks. Its state is read from the dataset's head: `stale` (still tagged), `confirmed`
(back, with the answer and checks it had), `corrected` (back, with another answer or checks), `excluded` (the tag
removed, the row kept out), `removed` (no longer in the dataset).

The datasets concerned: the ones tasks grounding on the knowledge base train on, and the ones generated from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.errors import DomainError, Invalid, NotFound
from core.settings import Settings
from core.status import DatasetStatus
from db.models import Dataset, DatasetVersion, KnowledgeBase, MLTask, StaleRow
from facts.corrections import Proposal, propose
from facts.derive import common_terms, derive_checks
from facts.staleness import RowFacts, describe, stale_rows
from facts.staleness import StaleRow as Contradiction
from knowledge.index import KnowledgeIndex
from ml.examples import record_checks, record_to_pair
from schemas.checks import parse_checks
from schemas.reports import StaleRowNote
from services import dataset_versions as versions
from services.knowledge import get_knowledge_base
from storage.object_store import ObjectNotFound, ObjectStore
from versioning.annotations import RowEdit
from versioning.rows import Row

STALE_TAG = "stale"
STATES = ("stale", "confirmed", "corrected", "excluded", "removed")
MAX_REASON = 2000


@dataclass(frozen=True)
class DocumentChange:
    """One document of the knowledge base at a new version: its text before and after."""

    document_id: str
    name: str
    old_version: int
    new_version: int
    old_text: str
    new_text: str


@dataclass
class ListedStaleRow:
    record: StaleRow
    state: str  # one of STATES
    head_version: int  # the dataset version the state was read from
    proposal: Proposal | None = None  # the answer and checks with the change written in (`facts.corrections`)


def document_changes(
    previous: KnowledgeIndex, current: KnowledgeIndex, document_ids: list[str]
) -> list[DocumentChange]:
    """The documents among `document_ids` that both index versions hold, at different versions, with both texts."""
    before = {c.document_id: (c.document_version, c.filename) for c in previous.chunks}
    after = {c.document_id: (c.document_version, c.filename) for c in current.chunks}
    changes = []
    for document_id in document_ids:
        if document_id not in before or document_id not in after or before[document_id][0] == after[document_id][0]:
            continue
        old_text = previous.document_text(document_id, before[document_id][0])
        new_text = current.document_text(document_id, after[document_id][0])
        if old_text is not None and new_text is not None:
            changes.append(
                DocumentChange(
                    document_id,
                    after[document_id][1],
                    before[document_id][0],
                    after[document_id][0],
                    old_text,
                    new_text,
                )
            )
    return changes


def grounded_datasets(session: Session, kb: KnowledgeBase) -> list[Dataset]:
    """The datasets that tasks grounding on the knowledge base train on, and those generated from it (ready, not a
    task's training set)."""
    used = select(MLTask.dataset_id).where(MLTask.knowledge_base_id == kb.id, MLTask.org_id == kb.org_id)
    return list(
        session.scalars(
            select(Dataset)
            .where(
                Dataset.org_id == kb.org_id,
                or_(Dataset.id.in_(used), Dataset.source_knowledge_base_id == kb.id),
                Dataset.status == DatasetStatus.READY.value,
                Dataset.is_optimized.is_(False),
            )
            .order_by(Dataset.created_at, Dataset.id)
        )
    )


def row_facts(rows: Iterable[Row]) -> list[RowFacts]:
    """What each row asks (its checks, or the ones derived from its answer as training would); rows that cannot be
    read as a question and answer are left out."""
    pairs: list[tuple[Row, str, str]] = []
    for row in rows:
        try:
            question, answer = record_to_pair(row.record)
        except ValueError:
            continue
        pairs.append((row, question, answer))
    common = common_terms([answer for _, _, answer in pairs])
    facts = []
    for row, question, answer in pairs:
        try:
            raw = record_checks(row.record)
        except ValueError:
            continue
        checks = parse_checks(raw) if raw else derive_checks(question, answer, common)
        facts.append(RowFacts(row.id, question, answer, checks))
    return facts


def mark_stale_rows(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    kb: KnowledgeBase,
    knowledge_base_version: int,
    changes: list[DocumentChange],
) -> list[StaleRow]:
    """Mark, in a new version of each grounded dataset, the rows the changes contradict, and record them; the new
    records. Safe to repeat: a row already tagged stale gets no new edit, and a recorded row no second record."""
    recorded: list[StaleRow] = []
    for dataset in grounded_datasets(session, kb):
        head = versions.head_version(session, store, kb.org_id, dataset.id, None)
        rows = versions.version_rows(store, head)
        facts = row_facts(r for r in rows if not r.excluded or STALE_TAG in r.tags)
        found: dict[str, tuple[DocumentChange, Contradiction]] = {}
        for change in changes:
            for stale in stale_rows(change.old_text, change.new_text, facts):
                found.setdefault(stale.row_id, (change, stale))
        if not found:
            continue
        by_id = {r.id: r for r in rows}
        edits = [
            RowEdit(row_id, add_tags=[STALE_TAG], excluded=True)
            for row_id in found
            if STALE_TAG not in by_id[row_id].tags or not by_id[row_id].excluded
        ]
        version = head.version
        if edits:
            version = versions.annotate(
                session,
                store,
                settings,
                org_id=kb.org_id,
                dataset_id=dataset.id,
                edits=edits,
                reason=_reason(kb, knowledge_base_version, [found[e.row_id] for e in edits]),
                created_by=None,
                base_version=head.version,
            ).version
        recorded.extend(_record(session, kb, knowledge_base_version, dataset.id, version, by_id, found))
    return recorded


def _reason(kb: KnowledgeBase, kb_version: int, found: list[tuple[DocumentChange, Contradiction]]) -> str:
    values: dict[str, list[str]] = {}
    for change, stale in found:
        described = describe(stale)
        key = f"{change.name} v{change.new_version}"
        if described not in values.setdefault(key, []):
            values[key].append(described)
    changed = "; ".join(f"document {name} changes {', '.join(v)}" for name, v in values.items())
    reason = f"stale: knowledge base {kb.name} v{kb_version}: {changed} ({len(found)} rows excluded until reviewed)"
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"


def _record(
    session: Session,
    kb: KnowledgeBase,
    kb_version: int,
    dataset_id: str,
    dataset_version: int,
    rows: dict[str, Row],
    found: dict[str, tuple[DocumentChange, Contradiction]],
) -> list[StaleRow]:
    known = {
        (r.row_id, r.document_id, r.document_version)
        for r in session.scalars(select(StaleRow).where(StaleRow.dataset_id == dataset_id))
    }
    new = []
    for row_id, (change, stale) in found.items():
        if (row_id, change.document_id, change.new_version) in known:
            continue
        record = rows[row_id].record
        new.append(
            StaleRow(
                org_id=kb.org_id,
                knowledge_base_id=kb.id,
                knowledge_base_version=kb_version,
                document_id=change.document_id,
                document_name=change.name,
                document_version=change.new_version,
                dataset_id=dataset_id,
                dataset_version=dataset_version,
                row_id=row_id,
                question=stale.question,
                answer=record_to_pair(record)[1],
                checks=list(record.get("checks") or []),
                old_value=stale.old_value[:300],
                new_value=stale.new_value[:300] if stale.new_value else None,
                old_sentence=stale.old_sentence,
                new_sentence=stale.new_sentence,
            )
        )
    session.add_all(new)
    session.commit()
    return new


def list_stale_rows(
    session: Session, store: ObjectStore, org_id: str, knowledge_base_id: str, state: str | None = None
) -> list[ListedStaleRow]:
    """Every row the knowledge base's document versions made stale, newest first, each with its state in its dataset's
    head (only those in `state`, when given)."""
    kb = get_knowledge_base(session, org_id, knowledge_base_id)
    records = session.scalars(
        select(StaleRow)
        .where(StaleRow.knowledge_base_id == kb.id, StaleRow.org_id == org_id)
        .order_by(StaleRow.created_at.desc(), StaleRow.dataset_id, StaleRow.row_id)
    ).all()
    heads: dict[str, tuple[int, dict[str, Row]] | None] = {}
    listed = []
    for record in records:
        if record.dataset_id not in heads:
            heads[record.dataset_id] = _head_rows(session, store, org_id, record.dataset_id)
        head = heads[record.dataset_id]
        if head is None:  # the dataset was deleted, or cannot be read
            continue
        found = ListedStaleRow(record, _state(record, head[1].get(record.row_id)), head[0], proposal_for(record))
        if state is None or found.state == state:
            listed.append(found)
    return listed


@dataclass(frozen=True)
class AcceptedProposals:
    accepted: list[ListedStaleRow]  # the rows now corrected with their proposals
    without_proposal: list[ListedStaleRow]  # rows asked for that have none: a person corrects them by hand
    versions: list[DatasetVersion]  # one annotation per dataset


def accept_proposals(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    org_id: str,
    knowledge_base_id: str,
    row_ids: list[str] | None,
    reason: str,
    created_by: str | None,
) -> AcceptedProposals:
    """Accept the proposed corrections of the knowledge base's stale rows (every one, or those of `row_ids`): in each
    dataset concerned, one annotation gives those rows their proposed answer and checks, removes the `stale` tag and
    brings them back, with who and why. A row asked for that is not stale is Invalid, and nothing is written; a row
    without a proposal is left stale and listed."""
    stale = list_stale_rows(session, store, org_id, knowledge_base_id, STALE_TAG)
    chosen = [found for found in stale if row_ids is None or found.record.row_id in row_ids]
    missing = sorted(set(row_ids or []) - {found.record.row_id for found in chosen})
    if missing:
        raise Invalid(f"not a stale row of knowledge base {knowledge_base_id}: {', '.join(missing)}")
    accepted, without, seen = [], [], set()
    by_dataset: dict[str, list[RowEdit]] = {}
    for found in chosen:  # newest first: a row two document versions made stale takes the newest proposal
        record = found.record
        if found.proposal is None:
            without.append(found)
        elif (record.dataset_id, record.row_id) not in seen:
            seen.add((record.dataset_id, record.row_id))
            accepted.append(found)
            by_dataset.setdefault(record.dataset_id, []).append(
                RowEdit(
                    row_id=record.row_id,
                    answer=found.proposal.answer,
                    checks=found.proposal.checks,
                    remove_tags=[STALE_TAG],
                    excluded=False,
                )
            )
    made = [
        versions.annotate(
            session,
            store,
            settings,
            org_id=org_id,
            dataset_id=dataset_id,
            edits=edits,
            reason=reason,
            created_by=created_by,
        )
        for dataset_id, edits in by_dataset.items()
    ]
    return AcceptedProposals(accepted, without, made)


def proposal_for(record: StaleRow) -> Proposal | None:
    """The correction `facts.corrections` proposes for the row as it was when marked stale."""
    return propose(record.answer, list(record.checks or []), record.old_value, record.new_value, record.new_sentence)


def task_stale_rows(session: Session, store: ObjectStore, task: MLTask) -> list[StaleRowNote]:
    """The stale rows of the task's dataset from its knowledge base, for its report (none without either)."""
    if not task.knowledge_base_id:
        return []
    try:
        listed = list_stale_rows(session, store, task.org_id, task.knowledge_base_id)
    except NotFound:  # the knowledge base was deleted
        return []
    return [
        StaleRowNote(
            row_id=f.record.row_id,
            question=f.record.question,
            old_value=f.record.old_value,
            new_value=f.record.new_value,
            document=f.record.document_name,
            document_version=f.record.document_version,
            state=f.state,
        )
        for f in listed
        if f.record.dataset_id == task.dataset_id
    ]


def _head_rows(session: Session, store: ObjectStore, org_id: str, dataset_id: str) -> tuple[int, dict[str, Row]] | None:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.org_id != org_id:
        return None
    try:
        head = versions.get_version(session, store, org_id, dataset_id, dataset.version)
        return head.version, {r.id: r for r in versions.version_rows(store, head)}
    except (DomainError, ObjectNotFound):  # not readable now (deleted meanwhile): nothing to list of it
        return None


def _state(record: StaleRow, row: Row | None) -> str:
    if row is None:
        return "removed"
    if STALE_TAG in row.tags:
        return "stale"
    if row.excluded:
        return "excluded"
    try:
        answer = record_to_pair(row.record)[1]
    except ValueError:
        return "corrected"
    same = answer == record.answer and list(row.record.get("checks") or []) == list(record.checks or [])
    return "confirmed" if same else "corrected"
