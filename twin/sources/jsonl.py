"""JSONL source: one document per line, a file or a folder of `*.jsonl` files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from twin.cleaning import clean
from twin.documents import Category, RawDocument
from twin.errors import TwinError
from twin.raw_store import ImportSummary, Rejection, rejection, size_problem
from twin.sources.batch import SourceBatch, store_batch
from twin.sources.text import parse_date_field

REQUIRED_TEXT_FIELDS = ("author", "platform", "url", "content")


@dataclass(frozen=True)
class ParsedLine:
    line_number: int
    document: RawDocument | None
    rejection: Rejection | None
    text: str = ""


def jsonl_files(path: Path) -> list[Path]:
    """The file itself, or every `*.jsonl` file under a folder, in a stable order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        if not files:
            raise TwinError(f"No *.jsonl files in {path}.", "point at a .jsonl file or a folder of them.")
        return files
    raise TwinError(f"{path} does not exist.", "give the path of a .jsonl file or a folder of them.")


def parse_jsonl_file(path: Path, max_document_bytes: int) -> Iterator[ParsedLine]:
    """Every non-blank line of the file as a document or as a rejection with its reason."""
    with path.open("rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            if line_number == 1:
                raw_line = raw_line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM (Windows editors)
            if not raw_line.strip():
                continue
            try:
                text = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                kept = raw_line.decode("utf-8", errors="backslashreplace")
                reason = f"not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
                yield ParsedLine(line_number, None, rejection(line_number, reason, kept))
                continue
            try:
                document = parse_document(text, max_document_bytes)
            except ValueError as exc:
                yield ParsedLine(line_number, None, rejection(line_number, str(exc), text))
                continue
            yield ParsedLine(line_number, document, None, text)


def parse_document(line: str, max_document_bytes: int) -> RawDocument:
    """One JSON line as a RawDocument; ValueError names what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for field in REQUIRED_TEXT_FIELDS:
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            state = "missing" if value is None else "empty" if isinstance(value, str) else "not a string"
            raise ValueError(f"{field} is {state}")
    categories = ", ".join(c.value for c in Category)
    try:
        category = Category(record.get("category"))
    except ValueError:
        raise ValueError(f"unknown category {record.get('category')!r} (expected one of {categories})") from None
    title = record.get("title") or ""
    if not isinstance(title, str):
        raise ValueError("title is not a string")
    content: str = record["content"].replace("\x00", "")
    if problem := size_problem(content, max_document_bytes):  # before cleaning, which costs
        raise ValueError(problem)
    cleaned = clean(category, content, title=title, author=record["author"])
    if not cleaned.text:
        raise ValueError(f"content {cleaned.reason_empty()}")
    return RawDocument(
        author=record["author"].strip(),
        category=category,
        platform=record["platform"].strip().lower(),
        url=record["url"].strip(),
        title=title.strip(),
        content=content,
        published_at=parse_date_field("published_at", record.get("published_at")),
    )


def import_jsonl(
    conn: psycopg.Connection,
    path: Path,
    *,
    max_document_bytes: int,
    prune: bool = False,
    only_twin: str | None = None,
    progress: Callable[[Path], None] | None = None,
) -> list[ImportSummary]:
    """Import a file or folder; one import (and one transaction) per file.

    A url seen twice in one call keeps its first line; later ones are rejected with the reason.
    With `only_twin`, lines of other authors are passed over (neither stored nor rejected).
    """
    summaries = []
    first_seen: dict[tuple[str, str], str] = {}
    for file in jsonl_files(path):
        batch = read_jsonl_batch(file, str(file.resolve()), max_document_bytes=max_document_bytes,
                                 only_twin=only_twin, first_seen=first_seen)
        summaries.append(store_batch(conn, batch, prune=prune, only_twin=only_twin,
                                     max_document_bytes=max_document_bytes))
        if progress is not None:
            progress(file)
    return summaries


def read_jsonl_batch(
    file: Path,
    source: str,
    *,
    max_document_bytes: int,
    only_twin: str | None = None,
    first_seen: dict[tuple[str, str], str] | None = None,
) -> SourceBatch:
    """One JSONL file as a SourceBatch named `source`; `first_seen` spans several files."""
    batch = SourceBatch(source=source, readable_checked=True,  # parse_document refuses those lines
                        first_seen={} if first_seen is None else first_seen)
    for parsed in parse_jsonl_file(file, max_document_bytes):
        if parsed.rejection is not None:
            batch.rejections.append(parsed.rejection)
            continue
        doc = parsed.document
        assert doc is not None
        if only_twin is not None and doc.twin != only_twin:
            continue
        batch.add(doc, f"{file.name} line {parsed.line_number}", item=parsed.text, line_number=parsed.line_number)
    return batch
