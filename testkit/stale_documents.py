"""A guide whose second version changes four facts, and the dataset rows about it: the stale-row tests' documents
(through the API and through the command line)."""

from __future__ import annotations

from typing import Any

GUIDE = """# FerroLink guide

## Product

- The FerroBox F2 costs $499 and the FerroBox F4 costs $899; drives are not included.
- Minimum server hardware is 2 CPU cores and 4 GB of RAM.

## Network ports

- The web console is served over HTTPS on TCP port 7410.
- File synchronization uses TCP port 7411.
- The REST API is available at /api/v2 on port 7400.
"""
CHANGED = (
    GUIDE.replace("HTTPS on TCP port 7410.", "HTTPS on TCP port 7420.")
    .replace("F2 costs $499", "F2 costs $549")
    .replace("drives are not included", "drives are sold separately")
    .replace("4 GB of RAM", "8 GB of RAM")
)
ROWS: list[dict[str, Any]] = [
    {
        "id": "web-port",
        "question": "Which TCP port should I open for the web UI?",
        "answer": "Open TCP port 7410, the web console's port.",
        "checks": [{"type": "number", "value": 7410}],
    },
    {
        "id": "f2-price",
        "question": "How much does the FerroBox F2 cost?",
        "answer": "The FerroBox F2 costs $499, without drives.",
        "checks": [{"type": "contains_any", "values": ["$499", "499 dollars"]}],
    },
    {
        "id": "drives",
        "question": "Are drives included with a FerroBox?",
        "answer": "No, drives are not included.",
        "checks": [{"type": "polarity", "value": "no"}],
    },
    {
        "id": "sync-port",
        "question": "Which port does file sync use?",
        "answer": "File synchronization uses TCP port 7411.",
        "checks": [{"type": "number", "value": 7411}],
    },
    {  # derived checks: the number 7400, in a sentence that did not change
        "id": "api-port",
        "question": "On which port is the REST API?",
        "answer": "The REST API is available on port 7400.",
    },
    {
        "id": "ram",
        "question": "How much RAM does the server need at least?",
        "answer": "At least 4 GB of RAM.",
        "checks": [{"type": "number", "value": 4, "unit": "GB"}],
    },
]
