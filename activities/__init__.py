"""Temporal activities: thin adapters that load inputs, call the ML library, heartbeat and store outputs."""
