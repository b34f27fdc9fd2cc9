"""The web console: static pages (plain ES modules, no build step, nothing fetched from elsewhere) that the API serves
at `/` and that talk only to the API, with the signed-in user's own tokens."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
INDEX = STATIC / "index.html"
