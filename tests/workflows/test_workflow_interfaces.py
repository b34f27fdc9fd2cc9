"""Each workflow's declaration in `temporal_client.workflows` (what the API, services and activities call) matches the
implementation the workers register: the same name, input and result types, and the same signals, updates and queries
with the same argument and return types. A mismatch would start or query a workflow the workers do not run."""

from __future__ import annotations

import inspect
from typing import Any, get_type_hints

import pytest
from temporalio import workflow

import temporal_client.workflows as declared
from workers.pools import WORKFLOWS


def shape(cls: type) -> dict[str, Any]:
    """What a caller relies on: the names and types of the workflow's run, signals, updates and queries."""
    defn = workflow._Definition.must_from_class(cls)

    def types(fn: Any) -> tuple[Any, ...]:
        hints = get_type_hints(fn)
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        return tuple(hints.get(p) for p in params), hints.get("return")

    return {
        "name": defn.name,
        "run": types(defn.run_fn),
        "signals": {name: types(s.fn) for name, s in defn.signals.items()},
        "updates": {name: types(u.fn) for name, u in defn.updates.items()},
        "queries": {name: types(q.fn) for name, q in defn.queries.items()},
    }


@pytest.mark.parametrize("implementation", WORKFLOWS, ids=lambda cls: cls.__name__)
def test_the_declaration_matches_the_registered_workflow(implementation):
    declaration = getattr(declared, implementation.__name__)
    assert shape(declaration) == shape(implementation)


def test_every_declaration_is_registered():
    declarations = {
        name
        for name, cls in vars(declared).items()
        if inspect.isclass(cls) and workflow._Definition.from_class(cls) is not None
    }
    assert declarations == {cls.__name__ for cls in WORKFLOWS}
