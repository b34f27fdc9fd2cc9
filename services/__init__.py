"""Domain services: the operations on datasets, tasks, organizations, members and keys, inside one organization.

The HTTP API, the CLI and (later) the serving process call these; they raise `core.errors`, never HTTP
errors, and import nothing of a web framework.
"""
