"""Documents to text with structure: Markdown headings become each section's heading path; HTML is reduced to its
main content (trafilatura drops navigation and boilerplate) and then read as Markdown; PDF text comes from pypdf,
one section per page; plain text is one section."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import PurePath

MEDIA_TYPES = {
    "md": "text/markdown",
    "markdown": "text/markdown",
    "txt": "text/plain",
    "html": "text/html",
    "htm": "text/html",
    "pdf": "application/pdf",
}


class DocumentError(ValueError):
    """The document cannot be read as its type says, or holds no text (the message says which)."""


@dataclass
class Section:
    """A run of the document's text under one heading path (outermost heading first)."""

    heading_path: list[str]
    start: int  # character offsets into ParsedDocument.text
    end: int


@dataclass
class ParsedDocument:
    media_type: str
    text: str
    sections: list[Section] = field(default_factory=list)


def media_type_of(filename: str) -> str:
    """The media type a file name says, or DocumentError naming the types accepted."""
    suffix = PurePath(filename or "").suffix.lower().lstrip(".")
    if suffix not in MEDIA_TYPES:
        accepted = ", ".join(sorted(MEDIA_TYPES))
        raise DocumentError(f"unsupported document type {suffix or '(none)'!r}; expected one of {accepted}")
    return MEDIA_TYPES[suffix]


def check_content(head: bytes, media_type: str) -> None:
    """Refuse at upload what is plainly not of its type (the first bytes are enough)."""
    if media_type == "application/pdf":
        if not head.lstrip().startswith(b"%PDF-"):
            raise DocumentError("the file is not a PDF (it does not start with %PDF-)")
    elif b"\x00" in head:
        raise DocumentError(f"a {media_type} document must be text, but this file holds binary data")


def parse_document(data: bytes, media_type: str) -> ParsedDocument:
    """The document's text and sections; DocumentError if it is unreadable or holds no text."""
    if media_type == "application/pdf":
        document = _parse_pdf(data)
    else:
        text = _decode(data)
        if media_type == "text/html":
            text = _html_to_markdown(text)
        document = (
            _parse_markdown(text, media_type)
            if media_type in ("text/markdown", "text/html")
            else _single_section(text, media_type)
        )
    if not document.sections:  # nothing but whitespace, or only headings
        raise DocumentError("the document holds no text")
    return document


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"the document is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc


def _single_section(text: str, media_type: str) -> ParsedDocument:
    return ParsedDocument(media_type, text, [Section([], 0, len(text))] if text.strip() else [])


def _html_to_markdown(html: str) -> str:
    import trafilatura

    extracted = trafilatura.extract(
        html, output_format="markdown", include_formatting=True, include_tables=True, favor_precision=True
    )
    return MARKDOWN_ESCAPE.sub(r"\1", extracted or "")  # keep the structure, not the escapes: chunks are read as text


HEADING = re.compile(r"^h([1-6])$")
MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")


def _parse_markdown(text: str, media_type: str) -> ParsedDocument:
    """Sections between headings (markdown-it's token map gives each heading's lines); a section's path is the
    stack of headings above it, so `## Ports` under `# FerroLink` is ["FerroLink", "Ports"]."""
    from markdown_it import MarkdownIt

    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    tokens = MarkdownIt("commonmark").parse(text)
    headings: list[tuple[int, str, int, int]] = []  # (level, title, first line, line after the heading)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map and (heading := HEADING.match(token.tag)):
            headings.append((int(heading.group(1)), tokens[i + 1].content.strip(), token.map[0], token.map[1]))

    def offset(line: int) -> int:
        return line_starts[line] if line < len(line_starts) else len(text)

    boundaries: list[tuple[list[str], int, int]] = []  # (heading path, body start, end) of each section, in order
    path: list[str] = []
    stack: list[tuple[int, str]] = []
    start = 0
    for level, title, first, after in headings:
        boundaries.append((path, start, offset(first)))  # the section before ends where this heading starts
        stack = [entry for entry in stack if entry[0] < level] + [(level, title)]
        path, start = [t for _, t in stack], offset(after)
    boundaries.append((path, start, len(text)))
    sections = [Section(p, s, e) for p, s, e in boundaries if text[s:e].strip()]
    return ParsedDocument(media_type, text, sections)


def _parse_pdf(data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentError("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"not a readable PDF: {exc}") from exc
    text, sections = "", []
    for number, page in enumerate(pages, start=1):
        if page.strip():
            start = len(text)
            text += page.strip() + "\n\n"
            sections.append(Section([f"page {number}"], start, len(text)))
    return ParsedDocument("application/pdf", text, sections)
