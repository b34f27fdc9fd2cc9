"""Domain core: settings and the task state machine, shared by every other package."""
