"""Temporal workflows: orchestration only, deterministic. Each lives in its own module, and nothing is imported here:
the workflow sandbox re-imports a run's workflow module (and its parent packages) for every new run."""
