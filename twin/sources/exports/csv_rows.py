"""CSV members of an export (LinkedIn's Shares.csv, Substack's posts.csv): rows keyed by column,
with a broken row rejected and reading resumed on the next line."""

from __future__ import annotations

import csv
import io
import itertools
import zipfile
from collections.abc import Iterator

from twin.sources.batch import SourceBatch
from twin.sources.exports.archive import Archive, MemberError
from twin.sources.text import decode_bytes


def csv_rows(
    archive: Archive, info: zipfile.ZipInfo, batch: SourceBatch, required: tuple[str, ...],
) -> Iterator[tuple[str, dict[str, str], str]]:
    """(`file line N`, row keyed by lower-case column, raw text) for each well-formed CSV row.

    A row with broken quoting or the wrong number of fields is rejected and reading resumes on
    the next line; a header without the `required` columns rejects the whole file.
    """
    name = info.filename
    try:
        text = decode_bytes(archive.read(info))[0]
    except MemberError as exc:
        batch.reject(name, str(exc))
        return
    if text is None:
        batch.reject(name, f"{name} is not text in UTF-8 or any detectable encoding")
        return
    header: list[str] | None = None
    for line_number, fields, raw, error in _csv_records(text):
        where = f"{name} line {line_number}"
        if error is not None:
            batch.reject(raw, f"{where}: broken CSV quoting ({error}); expected comma-separated "
                              "fields with quotes doubled inside quoted fields")
            if header is None:
                return
            continue
        if header is None:
            header = [column.strip().lower() for column in fields]
            missing = [column for column in required if column.lower() not in header]
            if missing:
                batch.reject(raw, f"{name}: unexpected header ({', '.join(fields)}); expected the "
                                  f"columns {', '.join(required)} (missing {', '.join(missing)})")
                return
            continue
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            batch.reject(raw, f"{where}: {len(fields)} fields where the header has {len(header)}")
            continue
        yield where, dict(zip(header, fields, strict=True)), raw
    if header is None:
        batch.reject(name, f"{name} is empty; expected a header with {', '.join(required)}")



def _csv_records(text: str) -> Iterator[tuple[int, list[str], str, str | None]]:
    """(first line number, fields, raw text, parse error) per CSV record, recovering after errors.

    An unterminated quote swallows every line after it, so after any error parsing restarts on
    the line after the one where the broken record began.
    """
    lines = list(io.StringIO(text, newline=""))
    start = 0
    while start < len(lines):
        reader = csv.reader(itertools.islice(lines, start, None), strict=True)
        consumed = 0
        try:
            for fields in reader:
                first = start + consumed
                consumed = reader.line_num
                yield first + 1, fields, "".join(lines[first:start + consumed]).rstrip("\r\n"), None
            return
        except csv.Error as exc:
            first = start + consumed
            yield first + 1, [], lines[first].rstrip("\r\n"), str(exc)
            start = first + 1

