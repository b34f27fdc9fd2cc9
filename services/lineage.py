"""The lineage graph: what any node of the platform came from (upstream) and what came of it (downstream), inside one
organization.

Nodes and the edges between them (upstream → downstream):

- `document_version` (an earlier version of a knowledge-base document, replaced by an upload of the same name) → the
  next one, the last of them → the `document`;
- `document` (a knowledge-base document, at its current version) → its `knowledge_base`;
- `knowledge_base` → the `dataset_version`s generated from it, and the `task`s that ground on it;
- `dataset_version` → the next version made from it, and the `task`s that pinned it or learned its corrections (a
  feedback round);
- `task` → its `iteration`s, and the incremental `task`s that continue it;
- `iteration` → the `model_version` its adapter became;
- `model_version` → the `alias`es that point at it, and the `qa_answer`s it gave;
- `qa_answer` → the feedback `dataset_version`s made from it.

Ids: a document version is `<document id>@<version>`, a dataset version `<dataset id>@<version>`, an iteration
`<task id>:<number>`, a model version `<model name>@<version>`, an alias `<model name>:<alias>`; the others are their
rows' ids. Another organization's node is not found.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from core.errors import Invalid, NotFound
from db.models import (
    Dataset,
    KnowledgeBase,
    KnowledgeDocument,
    MLTask,
    ModelAlias,
    ModelVersion,
    QAEntry,
    RegisteredModel,
)
from schemas.api import LineageKind
from services.tasks import trained_on

KINDS = tuple(kind.value for kind in LineageKind)
MAX_NODES = 200  # per direction: a graph bigger than this is cut, and says so
MAX_ANSWERS = 20  # a version's answers shown (the newest); the QA history lists them all


@dataclass(frozen=True)
class Node:
    kind: str
    id: str
    label: str


@dataclass
class Graph:
    root: Node
    nodes: dict[tuple[str, str], Node] = field(default_factory=dict)
    edges: set[tuple[tuple[str, str], tuple[str, str]]] = field(default_factory=set)
    truncated: bool = False


def lineage(session: Session, org_id: str, kind: str, node_id: str) -> Graph:
    """The node with everything upstream and downstream of it; NotFound when it is not this organization's."""
    if kind not in KINDS:
        raise Invalid(f"unknown node kind {kind!r}; expected one of {', '.join(KINDS)}")
    walk = Walk(session, org_id)
    root = walk.node(kind, node_id)
    graph = Graph(root=root, nodes={(root.kind, root.id): root})
    for direction in (walk.downstream, walk.upstream):
        queue, seen = deque([root]), {(root.kind, root.id)}
        while queue:
            current = queue.popleft()
            for neighbour in direction(current):
                key = (neighbour.kind, neighbour.id)
                edge = (
                    ((current.kind, current.id), key)
                    if direction == walk.downstream
                    else (key, (current.kind, current.id))
                )
                graph.edges.add(edge)
                if key in seen:
                    continue
                if len(seen) >= MAX_NODES:
                    graph.truncated = True
                    break
                seen.add(key)
                graph.nodes[key] = neighbour
                queue.append(neighbour)
    return graph


class Walk:
    """Node lookups and neighbours inside one organization."""

    def __init__(self, session: Session, org_id: str):
        self.session, self.org_id = session, org_id

    # ------------------------------------------------------------------ nodes

    def node(self, kind: str, node_id: str) -> Node:
        found = self._find(kind, node_id)
        if found is None:
            raise NotFound(f"{kind.replace('_', ' ')} {node_id} not found")
        return found

    def _find(self, kind: str, node_id: str) -> Node | None:
        finders: dict[str, Callable[[str], Node | None]] = {
            "document_version": self._document_version,
            "document": self._document,
            "knowledge_base": self._knowledge_base,
            "dataset_version": self._dataset_version,
            "task": self._task,
            "iteration": self._iteration,
            "model_version": self._model_version,
            "alias": self._alias,
            "qa_answer": self._qa_answer,
        }
        return finders[kind](node_id)

    def _document(self, node_id: str) -> Node | None:
        row = self.session.execute(
            select(KnowledgeDocument)
            .join(KnowledgeBase, KnowledgeBase.id == KnowledgeDocument.knowledge_base_id)
            .where(KnowledgeDocument.id == node_id, KnowledgeBase.org_id == self.org_id)
        ).scalar_one_or_none()
        return Node("document", row.id, f"{row.filename} v{row.version}") if row else None

    def _document_version(self, node_id: str) -> Node | None:
        """An earlier version of a document (its bytes are gone; what was made of it names it)."""
        document_id, _, number = node_id.rpartition("@")
        document = self._document(document_id)
        row = self.session.get(KnowledgeDocument, document_id) if document else None
        if row is None or not number.isdigit() or not 1 <= int(number) < row.version:
            return None
        return Node("document_version", node_id, f"{row.filename} v{number}")

    def _knowledge_base(self, node_id: str) -> Node | None:
        row = self.session.get(KnowledgeBase, node_id)
        return Node("knowledge_base", row.id, row.name) if row and row.org_id == self.org_id else None

    def _dataset_version(self, node_id: str) -> Node | None:
        dataset_id, _, number = node_id.rpartition("@")
        dataset = self.session.get(Dataset, dataset_id)
        if dataset is None or dataset.org_id != self.org_id or not number.isdigit():
            return None
        if not 1 <= int(number) <= dataset.version:
            return None
        return Node("dataset_version", node_id, f"{dataset.name} v{number}")

    def _task(self, node_id: str) -> Node | None:
        row = self.session.get(MLTask, node_id)
        return Node("task", row.id, row.name) if row and row.org_id == self.org_id else None

    def _iteration(self, node_id: str) -> Node | None:
        task_id, _, number = node_id.rpartition(":")
        task = self.session.get(MLTask, task_id)
        if task is None or task.org_id != self.org_id or not number.isdigit():
            return None
        if not 1 <= int(number) <= max(task.current_iteration, 0):
            return None
        return Node("iteration", node_id, f"{task.name} iteration {number}")

    def _model_version(self, node_id: str) -> Node | None:
        row = self._version_row(node_id)
        return Node("model_version", node_id, node_id) if row is not None else None

    def _version_row(self, node_id: str) -> ModelVersion | None:
        name, _, number = node_id.rpartition("@")
        if not number.isdigit():
            return None
        return self.session.execute(
            select(ModelVersion)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(
                RegisteredModel.org_id == self.org_id, RegisteredModel.name == name, ModelVersion.version == int(number)
            )
        ).scalar_one_or_none()

    def _version_ids(self, row_ids: list[str]) -> list[str]:
        """Model versions' node ids (`<model name>@<version>`) from their rows' ids."""
        rows = self.session.execute(
            select(RegisteredModel.name, ModelVersion.version)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(ModelVersion.id.in_(row_ids), ModelVersion.org_id == self.org_id)
            .order_by(RegisteredModel.name, ModelVersion.version)
        )
        return [f"{name}@{version}" for name, version in rows]

    def _alias(self, node_id: str) -> Node | None:
        name, _, alias = node_id.rpartition(":")
        found = self.session.execute(
            select(ModelAlias)
            .join(RegisteredModel, RegisteredModel.id == ModelAlias.model_id)
            .where(RegisteredModel.org_id == self.org_id, RegisteredModel.name == name, ModelAlias.name == alias)
        ).scalar_one_or_none()
        return Node("alias", node_id, f"{name}@{alias}") if found else None

    def _qa_answer(self, node_id: str) -> Node | None:
        row = self.session.get(QAEntry, node_id)
        return Node("qa_answer", row.id, f"answer of {row.model}") if row and row.org_id == self.org_id else None

    def _nodes(self, kind: str, ids: list[str]) -> list[Node]:
        return [n for i in ids if (n := self._find(kind, i)) is not None]

    # ------------------------------------------------------------------ downstream

    def downstream(self, node: Node) -> list[Node]:
        s, org = self.session, self.org_id
        if node.kind == "document_version":
            document_id, _, number = node.id.rpartition("@")
            next_version = self._nodes("document_version", [f"{document_id}@{int(number) + 1}"])
            return next_version or self._nodes("document", [document_id])
        if node.kind == "document":
            row = s.get_one(KnowledgeDocument, node.id)
            return self._nodes("knowledge_base", [row.knowledge_base_id])
        if node.kind == "knowledge_base":
            generated = s.scalars(
                select(Dataset).where(Dataset.org_id == org, Dataset.source_knowledge_base_id == node.id)
            )
            tasks = s.scalars(select(MLTask.id).where(MLTask.org_id == org, MLTask.knowledge_base_id == node.id))
            return self._nodes("dataset_version", [f"{d.id}@1" for d in generated]) + self._nodes("task", list(tasks))
        if node.kind == "dataset_version":
            dataset_id, _, number = node.id.rpartition("@")
            dataset = s.get_one(Dataset, dataset_id)
            later = [f"{dataset_id}@{int(number) + 1}"] if int(number) < dataset.version else []
            tasks = s.scalars(
                select(MLTask.id).where(
                    MLTask.org_id == org,
                    or_(
                        trained_on(dataset_id, {int(number)}),
                        and_(
                            MLTask.corrections_dataset_id == dataset_id,
                            MLTask.corrections_dataset_version == int(number),
                        ),
                    ),
                )
            )
            return self._nodes("dataset_version", later) + self._nodes("task", list(tasks))
        if node.kind == "task":
            task = s.get_one(MLTask, node.id)
            children = s.scalars(select(MLTask.id).where(MLTask.org_id == org, MLTask.parent_task_id == node.id))
            iterations = [f"{node.id}:{n}" for n in range(1, max(task.current_iteration, 0) + 1)]
            return self._nodes("iteration", iterations) + self._nodes("task", list(children))
        if node.kind == "iteration":
            task_id, _, number = node.id.rpartition(":")
            versions = s.scalars(
                select(ModelVersion.id).where(
                    ModelVersion.org_id == org, ModelVersion.task_id == task_id, ModelVersion.iteration == int(number)
                )
            )
            return self._nodes("model_version", self._version_ids(list(versions)))
        if node.kind == "model_version":
            version = self._version_row(node.id)
            assert version is not None  # the node was found
            model = s.get_one(RegisteredModel, version.model_id)
            aliases = s.scalars(select(ModelAlias.name).where(ModelAlias.version_id == version.id))
            answers = s.scalars(
                select(QAEntry.id)
                .where(QAEntry.org_id == org, QAEntry.model_version_id == version.id)
                .order_by(QAEntry.created_at.desc())
                .limit(MAX_ANSWERS)
            )
            return self._nodes("alias", [f"{model.name}:{a}" for a in aliases]) + self._nodes(
                "qa_answer", list(answers)
            )
        if node.kind == "qa_answer":
            feedback = s.scalars(select(Dataset).where(Dataset.org_id == org, Dataset.dataset_type == "qa_feedback"))
            made = [d for d in feedback if node.id in ((d.generation_log or {}).get("qa_history_ids") or [])]
            return self._nodes("dataset_version", [f"{d.id}@1" for d in made])
        return []

    # ------------------------------------------------------------------ upstream

    def upstream(self, node: Node) -> list[Node]:
        s, org = self.session, self.org_id
        if node.kind in ("document", "document_version"):
            document_id, _, number = node.id.rpartition("@") if node.kind == "document_version" else (node.id, "", "")
            at = int(number) if number else s.get_one(KnowledgeDocument, document_id).version
            return self._nodes("document_version", [f"{document_id}@{at - 1}"] if at > 1 else [])
        if node.kind == "knowledge_base":
            documents = s.scalars(select(KnowledgeDocument.id).where(KnowledgeDocument.knowledge_base_id == node.id))
            return self._nodes("document", list(documents))
        if node.kind == "dataset_version":
            dataset_id, _, number = node.id.rpartition("@")
            dataset = s.get_one(Dataset, dataset_id)
            if int(number) > 1:
                return self._nodes("dataset_version", [f"{dataset_id}@{int(number) - 1}"])
            if dataset.source_knowledge_base_id:
                return self._nodes("knowledge_base", [dataset.source_knowledge_base_id])
            ids = (dataset.generation_log or {}).get("qa_history_ids") or []
            return self._nodes("qa_answer", list(ids)[:MAX_ANSWERS])
        if node.kind == "task":
            task = s.get_one(MLTask, node.id)
            up = self._nodes("dataset_version", [f"{task.dataset_id}@{task.dataset_version or 1}"])
            if task.corrections_dataset_id:
                up += self._nodes(
                    "dataset_version", [f"{task.corrections_dataset_id}@{task.corrections_dataset_version}"]
                )
            if task.knowledge_base_id:
                up += self._nodes("knowledge_base", [task.knowledge_base_id])
            if task.parent_task_id:
                up += self._nodes("task", [task.parent_task_id])
            return up
        if node.kind == "iteration":
            return self._nodes("task", [node.id.rpartition(":")[0]])
        if node.kind == "model_version":
            version = self._version_row(node.id)
            return self._nodes("iteration", [f"{version.task_id}:{version.iteration}"] if version else [])
        if node.kind == "alias":
            name, _, alias = node.id.rpartition(":")
            pointed = s.scalars(
                select(ModelAlias.version_id)
                .join(RegisteredModel, RegisteredModel.id == ModelAlias.model_id)
                .where(RegisteredModel.org_id == org, RegisteredModel.name == name, ModelAlias.name == alias)
            )
            return self._nodes("model_version", self._version_ids(list(pointed)))
        if node.kind == "qa_answer":
            entry = s.get_one(QAEntry, node.id)
            return self._nodes(
                "model_version", self._version_ids([entry.model_version_id] if entry.model_version_id else [])
            )
        return []
