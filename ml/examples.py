"""Reading instruction datasets (JSONL, JSON, CSV) in the common formats into `Example`s."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from schemas.checks import dump_checks, parse_checks

SUPPORTED_FORMATS = ("jsonl", "json", "csv")


class DatasetFormatError(ValueError):
    """The file cannot be read as the declared format; `errors` holds (line, message) pairs."""

    def __init__(self, message: str, errors: list[tuple[int, str]] | None = None):
        self.errors = errors or []
        detail = "; ".join(f"line {line}: {msg}" for line, msg in self.errors[:5])
        super().__init__(f"{message}: {detail}" if detail else message)


@dataclass
class Example:
    """One question/answer pair, with its training weight and where it came from."""

    question: str
    answer: str
    id: str = ""
    weight: int = 1
    origin: str = "source"  # source | rewrite | generated
    source_line: int | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    # with a knowledge base: the passages put in the prompt (in order) and their chunk ids, and the chunk estimated
    # to hold the answer (knowledge.grounding), when one does
    context: list[str] = field(default_factory=list)
    context_chunk_ids: list[str] = field(default_factory=list)
    supporting_chunk_id: str | None = None
    # fact checks that judge an answer right or wrong (schemas.checks, as JSON): the row's own, or derived from its
    # answer
    checks: list[dict[str, Any]] = field(default_factory=list)
    # a chat row's turns before its last question ({role, content}, user and assistant): every assistant turn of them
    # is trained too, and the question is asked after them
    history: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = example_id(self.question, self.answer)

    @property
    def copies(self) -> int:
        """How many times training sees it: its weight, at least once."""
        return max(1, self.weight)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Example:
        return cls(**data)


@dataclass
class RawRow:
    """One record of the file before validation: its line number and the record (or why it is unreadable)."""

    line: int
    record: dict[str, Any] | None
    error: str | None = None


def normalize_text(text: str) -> str:
    """NFKC-normalize, turn every whitespace run (tabs, NBSP, newlines) into one space, strip."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def example_key(question: str, answer: str) -> str:
    """The normalized, case-folded text used for hashing, splitting and duplicate detection."""
    return f"{normalize_text(question).casefold()} || {normalize_text(answer).casefold()}"


def example_id(question: str, answer: str) -> str:
    return hashlib.sha256(example_key(question, answer).encode()).hexdigest()[:16]


def detect_format(filename: str) -> str:
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix in SUPPORTED_FORMATS:
        return suffix
    raise DatasetFormatError(
        f"unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(SUPPORTED_FORMATS)}"
    )


def read_rows(path: Path, file_format: str) -> Iterator[RawRow]:
    """Stream the records of a dataset file; syntax errors come back as rows with `error` set."""
    if file_format == "jsonl":
        with open(path, encoding="utf-8", errors="strict") as fh:
            for number, line in enumerate(_lines(fh), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield RawRow(number, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
                    continue
                yield RawRow(
                    number,
                    record if isinstance(record, dict) else None,
                    None if isinstance(record, dict) else "not a JSON object",
                )
    elif file_format == "json":
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.loads("".join(_lines(fh)))
            except json.JSONDecodeError as exc:
                yield RawRow(exc.lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
                return
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            yield RawRow(1, None, 'a JSON dataset must be an array of objects (or {"data": [...]})')
            return
        for index, record in enumerate(data, start=1):
            yield RawRow(
                index,
                record if isinstance(record, dict) else None,
                None if isinstance(record, dict) else "not a JSON object",
            )
    elif file_format == "csv":
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(_lines(fh))
            try:
                for record in reader:
                    if None in record:  # more cells than header columns
                        yield RawRow(reader.line_num, None, "more cells than header columns")
                        continue
                    yield RawRow(reader.line_num, dict(record))
            except csv.Error as exc:
                yield RawRow(reader.line_num, None, f"invalid CSV ({exc})")
    else:
        raise DatasetFormatError(f"unsupported format {file_format!r}")


def _lines(fh: io.TextIOBase) -> Iterator[str]:
    try:
        yield from fh
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"file is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc


def record_to_pair(record: dict[str, Any]) -> tuple[str, str]:
    """Map one record in a known instruction format to (question, answer); raise ValueError if none fits."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ValueError("'messages' must be a list of {role, content} objects")
        users = [m.get("content") for m in messages if m.get("role") == "user"]
        assistants = [m.get("content") for m in messages if m.get("role") == "assistant"]
        if not users or not assistants:
            raise ValueError("'messages' needs at least one user and one assistant message")
        return _text(users[-1], "user content"), _text(assistants[-1], "assistant content")
    if "instruction" in record and "output" in record:
        instruction = _text(record["instruction"], "instruction")
        extra = record.get("input") or ""
        question = f"{instruction}\n\n{_text(extra, 'input')}" if str(extra).strip() else instruction
        return question, _text(record["output"], "output")
    for q_key, a_key in (("question", "answer"), ("prompt", "response"), ("prompt", "completion")):
        if q_key in record and a_key in record:
            return _text(record[q_key], q_key), _text(record[a_key], a_key)
    raise ValueError(f"no known fields (question/answer, instruction/input/output, messages); got {sorted(record)[:6]}")


def record_history(record: dict[str, Any]) -> list[dict[str, str]]:
    """A chat row's user and assistant turns before its last user message (its question); [] for other rows."""
    messages = record.get("messages")
    if not isinstance(messages, list):
        return []
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    last_user = max((i for i, m in enumerate(turns) if m["role"] == "user"), default=0)
    return [{"role": m["role"], "content": _text(m.get("content"), f"{m['role']} content")} for m in turns[:last_user]]


def is_excluded(record: dict[str, Any]) -> bool:
    """Whether an annotation left the record out of training and evaluation (`"excluded": true`; a CSV cell says
    "true")."""
    return record.get("excluded") in (True, "true", "True", "1", 1)


def record_checks(record: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The record's validated fact checks as JSON (None when it has none); ValueError naming the check and field at
    fault.
    In a CSV file the `checks` column holds them as JSON text."""
    raw = record.get("checks")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and raw.lstrip().startswith("["):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"'checks' is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    return dump_checks(parse_checks(raw))


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"'{name}' must be text")
    return str(value)


@dataclass
class FileInspection:
    """What upload validation found: usable rows, rows with unknown fields, and syntax errors."""

    rows: int
    unrecognized: int
    syntax_errors: list[tuple[int, str]]


def inspect_file(path: Path, file_format: str, max_rows: int | None = None, max_errors: int = 5) -> FileInspection:
    """Validate a dataset file's syntax and format in one streaming pass (used before an upload is recorded)."""
    rows = unrecognized = 0
    errors: list[tuple[int, str]] = []
    for row in read_rows(path, file_format):
        if row.error:
            errors.append((row.line, row.error))
            if len(errors) >= max_errors:
                break
            continue
        rows += 1
        try:
            record_to_pair(row.record or {})
        except ValueError:
            unrecognized += 1
        else:
            try:
                record_checks(row.record or {})
            except ValueError as exc:
                errors.append((row.line, str(exc)))
                if len(errors) >= max_errors:
                    break
        if max_rows is not None and rows > max_rows:
            raise DatasetFormatError(f"too many rows (more than {max_rows})")
    if errors:
        raise DatasetFormatError(f"the file is not valid {file_format.upper()} with valid fact checks", errors)
    if rows == 0 or unrecognized == rows:
        raise DatasetFormatError(
            "no usable rows: expect question/answer, instruction/input/output or chat 'messages' records"
        )
    return FileInspection(rows=rows, unrecognized=unrecognized, syntax_errors=errors)


def write_jsonl(examples: list[Example], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    return path


def examples_from_jsonl(data: bytes) -> list[Example]:
    return [Example.from_json(json.loads(line)) for line in data.decode("utf-8").splitlines() if line.strip()]


def examples_to_jsonl(examples: list[Example]) -> bytes:
    return "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in examples).encode("utf-8")
