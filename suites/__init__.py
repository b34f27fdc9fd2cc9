"""Scenario suites as a plain library: a suite's cases with their assertions, its content hash, the verdict on one
answer, and the case-by-case comparison of two runs. No database, storage or Temporal: `services.suites` keeps the
suites and their runs, and `activities.suites` answers their cases with a model."""
