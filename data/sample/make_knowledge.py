"""Write the sample knowledge base from the fact sheet: FERROLINK_FACTS.md split into five documents, one per format.

    python data/sample/make_knowledge.py

The sections of the fact sheet go, without their fact ids, into five documents of data/sample/knowledge/:
two Markdown documents, one plain-text document, one HTML page (wrapped in a site's navigation, a cookie banner
and a footer, which ingestion must drop) and one PDF (written by fpdf2). The Markdown each of the last three was
made from is kept in data/sample/knowledge/source/. Every fact is in exactly one document.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
FACTS = HERE / "FERROLINK_FACTS.md"
OUT = HERE / "knowledge"

# the site's boilerplate around the article, which ingestion must drop
NAV = (
    '<header><nav><a href="/">Ferro Systems</a> | <a href="/products">Products</a> '
    '| <a href="/pricing">Pricing</a> | <a href="/blog">Blog</a> |'
)
COOKIE_BANNER = (
    '<div class="cookie-banner">We use cookies to improve your experience. <a href="/privacy">Privacy '
    "policy</a> <button>Accept all</button></div>"
)
RELATED = (
    '<aside><h3>Related articles</h3><ul><li><a href="/blog/roadmap">Our 2027 roadmap</a></li><li><a '
    'href="/blog/team">Meet the team</a></li></ul></aside>'
)
FOOTER = (
    '<footer>&copy; 2026 Ferro Systems OU, Tallinn. All rights reserved. <a href="/terms">Terms</a> '
    '<a href="/privacy">Privacy</a></footer>'
)

DOCUMENTS = {  # file stem -> (title, sections of the fact sheet)
    "ferrolink-product-and-setup": (
        "FerroLink product and setup guide",
        ["Product and company", "Network ports", "Configuration, files and service"],
    ),
    "ferrolink-command-line": ("FerroLink command-line reference", ["Command-line interface"]),
    "ferrolink-backups-and-storage": ("FerroLink backups, retention and storage", ["Backups, retention and storage"]),
    "ferrolink-security-and-licensing": ("FerroLink security and licensing", ["Security", "Licensing and pricing"]),
    "ferrolink-errors-api-and-support": (
        "FerroLink error codes, API and support",
        ["Error codes", "API", "Support and lifecycle"],
    ),
}
FORMATS = {
    "ferrolink-backups-and-storage": "txt",
    "ferrolink-security-and-licensing": "html",
    "ferrolink-errors-api-and-support": "pdf",
}
FACT_ID = re.compile(r"^- \*\*F\d+\*\* ")


def sections() -> dict[str, list[str]]:
    """Section title -> its facts, without the fact ids."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in FACTS.read_text().splitlines():
        if line.startswith("## "):
            current = out.setdefault(line[3:].strip(), [])
        elif current is not None and FACT_ID.match(line):
            current.append(FACT_ID.sub("", line).strip())
    return out


def markdown(title: str, parts: dict[str, list[str]]) -> str:
    lines = [f"# {title}", ""]
    for name, facts in parts.items():
        lines += [f"## {name}", ""] + [f"- {fact}" for fact in facts] + [""]
    return "\n".join(lines)


def plain_text(title: str, parts: dict[str, list[str]]) -> str:
    lines = [title.upper(), ""]
    for name, facts in parts.items():
        lines += [name, ""] + [re.sub(r"`([^`]*)`", r"\1", fact) for fact in facts] + [""]
    return "\n".join(lines)


def html(title: str, source: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").render(source)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | Ferro Systems</title></head>
<body>
{NAV}
<a href="/careers">Careers</a> | <a href="/login">Sign in</a></nav></header>
{COOKIE_BANNER}
<main><article>
{body}</article></main>
{RELATED}
{FOOTER}
</body></html>
"""


def pdf(title: str, parts: dict[str, list[str]]) -> bytes:
    from fpdf import FPDF

    document = FPDF()
    document.set_auto_page_break(auto=True, margin=15)
    document.add_page()
    document.set_font("helvetica", "B", 16)
    document.multi_cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
    for name, facts in parts.items():
        document.ln(3)
        document.set_font("helvetica", "B", 13)
        document.multi_cell(0, 8, name, new_x="LMARGIN", new_y="NEXT")
        document.set_font("helvetica", size=11)
        for fact in facts:
            document.multi_cell(0, 6, "- " + re.sub(r"`([^`]*)`", r"\1", fact), new_x="LMARGIN", new_y="NEXT")
    return bytes(document.output())


def main() -> None:
    by_section = sections()
    assert sum(len(s) for name, s in by_section.items() if any(name in parts for _, parts in DOCUMENTS.values())) == 89
    (OUT / "source").mkdir(parents=True, exist_ok=True)
    for stem, (title, names) in DOCUMENTS.items():
        parts = {name: by_section[name] for name in names}
        source = markdown(title, parts)
        kind = FORMATS.get(stem, "md")
        if kind == "md":
            (OUT / f"{stem}.md").write_text(source)
            continue
        (OUT / "source" / f"{stem}.md").write_text(source)
        if kind == "txt":
            (OUT / f"{stem}.txt").write_text(plain_text(title, parts))
        elif kind == "html":
            (OUT / f"{stem}.html").write_text(html(title, source))
        else:
            (OUT / f"{stem}.pdf").write_bytes(pdf(title, parts))
    print(f"wrote {', '.join(sorted(p.name for p in OUT.iterdir() if p.is_file()))}")


if __name__ == "__main__":
    main()
