"""Dataset versions at scale: 100k generated rows (question, answer, fact checks; a tenth of them chat rows) in two
versions that differ by 1% added, 1% removed and 2% changed rows.

The user's two files are stored as the platform stores an upload (`services.datasets.checked_upload`: read as
canonical rows, written with `versioning.rows.canonical_jsonl`, their content hash recorded); that is not measured.
The measured pipeline is what a diff of two stored versions runs (`services.dataset_versions.diff_versions`): both
stored files read (`read_canonical`: ids sliced from the lines, the content hash made from their bytes and checked
against the recorded one) and diffed (`diff_canonical`: only added, removed and changed rows parsed). The same files
fully parsed (`read_version`, `content_hash`, `diff_rows`: what a file not written canonical costs) is reported beside
it, and must give the same hashes and diff.

The reference is reading the user's files as a user would without versions: `json.loads` of every line of both files;
the same with orjson (the fastest JSON reader for Python) is reported beside it. Target: the pipeline runs at >= 0.5x
the reference's rows per second. Each figure is the best of `--repeats` runs (the least disturbed by the machine's
other work).

    python -m bench.datasets [--rows 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import write_result
from versioning.diff import diff_canonical, diff_rows
from versioning.rows import canonical_jsonl, content_hash, read_canonical, read_version

TARGET = 0.5


def generated_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        port = rng.randint(1024, 65535)
        question = f"Which port does service {i} of cluster {rng.randint(1, 500)} listen on?"
        answer = f"Service {i} listens on port {port}, unless its configuration file sets another."
        if i % 10 == 0:
            rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
        else:
            rows.append({"question": question, "answer": answer, "checks": [{"type": "number", "value": float(port)}]})
    return rows


def changed_version(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """1% of rows removed, 2% with a corrected answer, 1% added at the end."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        roll = rng.random()
        if roll < 0.01:
            continue
        if roll < 0.03 and "answer" in row:
            row = {**row, "answer": row["answer"].replace("listens", "now listens")}
        out.append(row)
    extra = len(rows) // 100
    return out + [{"question": f"New question {i}?", "answer": f"New answer {i}."} for i in range(extra)]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def read_plain(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if json.loads(line) is not None)


def read_fast(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if orjson.loads(line) is not None)


def best_of(repeats: int, run) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def store_version(user_file: Path, stored: Path) -> tuple[Path, str]:
    """The user's file stored as an upload is (`checked_upload`): its canonical rows, and the hash recorded for them."""
    rows = read_version(user_file, "jsonl")
    stored.write_bytes(canonical_jsonl(rows))
    return stored, content_hash(rows)


def measure(n: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        first = generated_rows(n, seed=1)
        before = write_jsonl(first, Path(tmp) / "v1.jsonl")
        after = write_jsonl(changed_version(first, seed=2), Path(tmp) / "v2.jsonl")
        rows = sum(1 for _ in open(before)) + sum(1 for _ in open(after))  # noqa: SIM115
        megabytes = (before.stat().st_size + after.stat().st_size) / 1e6
        stored_before, recorded_before = store_version(before, Path(tmp) / "stored-v1.jsonl")
        stored_after, recorded_after = store_version(after, Path(tmp) / "stored-v2.jsonl")
        stored_megabytes = (stored_before.stat().st_size + stored_after.stat().st_size) / 1e6

        reference_seconds, read = best_of(repeats, lambda: read_plain(before) + read_plain(after))
        fast_seconds, fast_read = best_of(repeats, lambda: read_fast(before) + read_fast(after))
        assert read == fast_read == rows

        def pipeline():
            old = read_canonical(stored_before.read_bytes(), recorded_before)
            new = read_canonical(stored_after.read_bytes(), recorded_after)
            assert old is not None and new is not None, "a stored version was not read as canonical"
            return old.content_hash, new.content_hash, diff_canonical(old, new)

        def parsed():
            old, new = read_version(stored_before, "jsonl"), read_version(stored_after, "jsonl")
            return content_hash(old), content_hash(new), diff_rows(old, new)

        pipeline_seconds, (old_hash, new_hash, diff) = best_of(repeats, pipeline)
        parsed_seconds, parsed_result = best_of(repeats, parsed)
        assert (old_hash, new_hash, diff) == parsed_result, "the pipeline's hashes or diff differ from the parsed ones"
    ratio = (rows / pipeline_seconds) / (rows / reference_seconds)
    return {
        "rows_in_both_versions": rows,
        "megabytes": round(megabytes, 1),
        "stored_megabytes": round(stored_megabytes, 1),
        "repeats": repeats,
        "reference": {"what": "json.loads of every line of both user files", "seconds": round(reference_seconds, 3)},
        "fastest_reading": {"what": "orjson.loads of every line of both user files", "seconds": round(fast_seconds, 3)},
        "pipeline": {
            "what": (
                "both stored (canonical) versions read without parsing, their content hashes made from their bytes "
                "and checked against the recorded ones, and the row diff (only added, removed and changed rows parsed)"
            ),
            "seconds": round(pipeline_seconds, 3),
            "rows_per_second": round(rows / pipeline_seconds),
        },
        "parsed": {
            "what": "the same stored versions fully parsed (canonical rows), their content hashes and the row diff",
            "seconds": round(parsed_seconds, 3),
            "ratio_to_reading": round(reference_seconds / parsed_seconds, 3),
        },
        "diff_counts": diff.counts,
        "hashes_differ": old_hash != new_hash,
        "hashes_match_recorded": (old_hash, new_hash) == (recorded_before, recorded_after),
        "ratio_to_reading": round(ratio, 3),
        "ratio_to_fastest_reading": round(fast_seconds / pipeline_seconds, 3),
        "target": TARGET,
        "holds": ratio >= TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    write_result("datasets", measure(args.rows, args.repeats))


if __name__ == "__main__":
    main()
