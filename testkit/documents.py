"""Documents the tests make: a question/answer dataset about a made-up product, the knowledge behind it, and
Markdown, HTML and PDF files to parse."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = [
    "backup",
    "sync",
    "restore",
    "console",
    "agent",
    "vault",
    "quota",
    "license",
    "audit",
    "mirror",
    "report",
    "schedule",
]


def write_dataset(path: Path, n_topics: int = 12) -> Path:
    """Question/answer pairs about a made-up product: 4 phrasings of 12 facts, distinct enough not to be near
    duplicates."""
    templates = [
        ("What port does the {t} service listen on?", "The {t} service listens on port {p}."),
        ("Which command starts a {t} job?", "Run 'ferro {t} start' to start a {t} job."),
        ("Where is the {t} log file kept?", "The {t} log is kept in /var/log/ferro/{t}.log."),
        ("How long are {t} records retained by default?", "{T} records are retained for {d} days by default."),
    ]
    rows = []
    for i, topic in enumerate(TOPICS[:n_topics]):
        for question, answer in templates:
            values = {"t": topic, "T": topic.capitalize(), "p": 7400 + i, "d": 10 + 5 * i}
            rows.append({"question": question.format(**values), "answer": answer.format(**values)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_knowledge(folder: Path, n_topics: int = 12) -> list[Path]:
    """The facts behind `write_dataset` as documents, three topics to a Markdown file with a section per topic."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, n_topics, 3):
        lines = [f"# Ferro services, part {start // 3 + 1}", ""]
        for i, topic in enumerate(TOPICS[start : min(start + 3, n_topics)], start=start):
            lines += [
                f"## The {topic} service",
                "",
                f"- The {topic} service listens on port {7400 + i}.",
                f"- Run 'ferro {topic} start' to start a {topic} job.",
                f"- The {topic} log is kept in /var/log/ferro/{topic}.log.",
                f"- {topic.capitalize()} records are retained for {10 + 5 * i} days by default.",
                "",
            ]
        path = folder / f"services-{start // 3 + 1}.md"
        path.write_text("\n".join(lines))
        paths.append(path)
    return paths


MARKDOWN = """# FerroLink guide

FerroLink syncs files between your devices.

## Network ports

- The web console is served over HTTPS on TCP port 7410.
- File synchronization uses TCP port 7411.

## Backups

### Retention

Hourly snapshots are kept for 48 hours. Daily snapshots are kept for 30 days.
"""

HTML = """<!doctype html><html><head><title>Security</title></head><body>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a> | <a href="/pricing">Pricing</a></nav>
<div class="cookie-banner">We use cookies to improve your experience. <a href="/privacy">Privacy policy</a></div>
<main><article>
<h1>Security</h1>
<p>Data at rest is encrypted with XChaCha20-Poly1305, and every connection uses TLS 1.3.</p>
<h2>Sessions</h2>
<p>Web console sessions expire after 30 minutes of inactivity. The console supports TOTP two-factor authentication.</p>
</article></main>
<footer>Copyright 2026 Ferro Systems. All rights reserved. Privacy policy. Cookie settings.</footer>
</body></html>"""


def make_pdf(pages: list[str]) -> bytes:
    """A real PDF written by fpdf2, one page per string."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def note(i: int) -> bytes:
    """A short Markdown note with one fact of its own."""
    return (
        f"# Note {i}\n\nThe setting option{i} of FerroLink defaults to {i * 11} and is changed in section [opt{i}].\n"
    ).encode()
