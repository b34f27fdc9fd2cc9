"""Access control, checked from the outside: one module per resource, plus the walk over every route."""
