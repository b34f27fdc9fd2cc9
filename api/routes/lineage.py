from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import SessionDep
from api.security import LineageRead
from schemas.api import LineageEdge, LineageGraph, LineageKind, LineageNode
from services import lineage as service

router = APIRouter(prefix="/api/v1/lineage", tags=["lineage"])


@router.get("/{kind}/{node_id}", response_model=LineageGraph)
def get_lineage(
    caller: LineageRead,
    session: SessionDep,
    kind: LineageKind,
    node_id: Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00/]+$")],
) -> LineageGraph:
    """What the node came from (upstream) and what came of it (downstream): document versions, knowledge bases,
    dataset versions, tasks and iterations, model versions, aliases, QA answers and the feedback datasets made of them.
    A document version's id (an earlier version of a document) is `<document id>@<version>`, a dataset version's
    `<dataset id>@<version>`, an iteration's `<task id>:<number>`, a model version's
    `<model name>@<version>`, an alias's `<model name>:<alias>`."""
    graph = service.lineage(session, caller.org_id, kind, node_id)

    def public(node: service.Node) -> LineageNode:
        return LineageNode(kind=node.kind, id=node.id, label=node.label)

    return LineageGraph(
        root=public(graph.root),
        nodes=[public(n) for n in graph.nodes.values()],
        edges=[LineageEdge(from_kind=a[0], from_id=a[1], to_kind=b[0], to_id=b[1]) for a, b in sorted(graph.edges)],
        truncated=graph.truncated,
    )
