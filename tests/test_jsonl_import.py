import json
from pathlib import Path

import psycopg

from twin.sources.jsonl import import_jsonl

MAX_BYTES = 1_000_000


def line(**overrides: object) -> str:
    record = {"author": "Ada Byte", "category": "post", "platform": "linkedin",
              "url": "https://example.com/p/1", "title": "Hello",
              "content": "Shipping small things often beats shipping big things rarely.",
              "published_at": "2024-05-01"}
    record.update(overrides)
    return json.dumps(record, ensure_ascii=False)


def write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode("utf-8") for line in lines) + b"\n")
    return path


def raw_rows(conn: psycopg.Connection) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in conn.execute(
        "SELECT url, twin, category, title, content, published_at FROM raw_documents")}


def test_each_bad_line_gets_its_reason_and_good_lines_still_land(conn: psycopg.Connection, tmp_path: Path) -> None:
    lines: list[str | bytes] = [
        line(url="https://example.com/good", content="<p>Good <b>post</b> 🚀 with **markdown**</p>"),
        line(url="https://example.com/empty", content=""),
        line(url="https://example.com/blank", content="   \n\t "),
        "{not json",
        "[1, 2, 3]",
        line(url="https://example.com/video", category="video"),
        line(url="https://example.com/latin1").encode("utf-8").replace(b"Shipping", b"Sh\xe9pping"),
        line(url="https://example.com/huge", category="article", content="word " * 1_100_000),
        line(url="https://example.com/good", content="a second line with the same url"),
        line(url="https://example.com/anonymous", author=""),
        json.dumps({"category": "post", "platform": "x", "url": "https://example.com/noauthor", "content": "hi"}),
        line(url="https://example.com/when", published_at="last tuesday"),
        "   ",
        line(url="https://example.com/markup", content="<div><br/></div> 🚀🚀"),
    ]
    [summary] = import_jsonl(conn, write(tmp_path / "bad.jsonl", lines), max_document_bytes=MAX_BYTES)
    reasons = {rejection.line_number: rejection.reason for rejection in summary.rejected}
    assert summary.accepted == 1 and summary.updated == 0 and summary.unchanged == 0
    assert reasons[2] == "content is empty"
    assert reasons[3] == "content is empty"
    assert reasons[4].startswith("invalid JSON")
    assert reasons[5] == "expected a JSON object, got list"
    assert reasons[6].startswith("unknown category 'video'")
    assert reasons[7].startswith("not valid UTF-8")
    assert "5.5 MB, over the 1.0 MB limit" in reasons[8]
    assert reasons[9] == "duplicate url https://example.com/good (first at bad.jsonl line 1)"
    assert reasons[10] == "author is empty"
    assert reasons[11] == "author is missing"
    assert reasons[12].startswith("published_at 'last tuesday' is not a date (expected e.g. 2024-05-01")
    assert reasons[14] == "content has no readable text (only markup, emoji or whitespace)"
    assert len(reasons) == 12  # the blank line 13 is not a document and not an error
    kept = dict(conn.execute(
        "SELECT line_number, line FROM import_rejections WHERE import_id = %s", (summary.import_id,)).fetchall())
    assert kept[4] == "{not json"
    assert "Sh\\xe9pping" in kept[7]  # the undecodable byte is kept, visibly
    assert kept[8].endswith("…[truncated]")
    assert conn.execute("SELECT accepted, rejected FROM imports WHERE id = %s",
                        (summary.import_id,)).fetchone() == (1, 12)
    assert list(raw_rows(conn)) == ["https://example.com/good"]


def test_reimporting_changes_nothing_and_an_edited_line_updates_only_that_document(conn: psycopg.Connection, tmp_path: Path) -> None:
    path = write(tmp_path / "posts.jsonl", [line(url=f"https://example.com/{i}", content=f"Post {i} text.")
                                            for i in range(3)])
    [first] = import_jsonl(conn, path, max_document_bytes=MAX_BYTES)
    before = {row[0]: row[1] for row in conn.execute("SELECT url, updated_at FROM raw_documents")}
    [again] = import_jsonl(conn, path, max_document_bytes=MAX_BYTES)
    assert (first.accepted, again.accepted, again.updated, again.unchanged) == (3, 0, 0, 3)
    write(path, [line(url=f"https://example.com/{i}", content="Edited." if i == 1 else f"Post {i} text.")
                 for i in range(3)])
    [edited] = import_jsonl(conn, path, max_document_bytes=MAX_BYTES)
    after = {row[0]: row[1] for row in conn.execute("SELECT url, updated_at FROM raw_documents")}
    assert (edited.accepted, edited.updated, edited.unchanged) == (0, 1, 2)
    assert raw_rows(conn)["https://example.com/1"][3] == "Edited."
    assert [url for url in after if after[url] != before[url]] == ["https://example.com/1"]


def test_a_bad_line_never_damages_the_stored_document(conn: psycopg.Connection, tmp_path: Path) -> None:
    good = write(tmp_path / "a.jsonl", [line(url="https://example.com/keep", content="Original words.")])
    import_jsonl(conn, good, max_document_bytes=MAX_BYTES)
    broken = write(tmp_path / "a.jsonl", [line(url="https://example.com/keep", content="  ")])
    [summary] = import_jsonl(conn, broken, max_document_bytes=MAX_BYTES, prune=True)
    assert summary.prune_skipped and summary.deleted == 0
    assert raw_rows(conn)["https://example.com/keep"][3] == "Original words."


def test_prune_removes_documents_gone_from_the_file(conn: psycopg.Connection, tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", [line(url="https://example.com/1"), line(url="https://example.com/2")])
    import_jsonl(conn, path, max_document_bytes=MAX_BYTES)
    write(path, [line(url="https://example.com/2")])
    [without_prune] = import_jsonl(conn, path, max_document_bytes=MAX_BYTES)
    assert without_prune.deleted == 0 and len(raw_rows(conn)) == 2
    [pruned] = import_jsonl(conn, path, max_document_bytes=MAX_BYTES, prune=True)
    assert pruned.deleted == 1 and list(raw_rows(conn)) == ["https://example.com/2"]


def test_a_folder_imports_every_file_and_authors_become_twins(conn: psycopg.Connection, tmp_path: Path) -> None:
    write(tmp_path / "one.jsonl", [line(author="Tomás Herrera", url="https://example.com/t")])
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested" / "two.jsonl", [line(author="Priya Raman", url="https://example.com/p")])
    summaries = import_jsonl(conn, tmp_path, max_document_bytes=MAX_BYTES)
    assert [s.accepted for s in summaries] == [1, 1]
    assert conn.execute("SELECT slug, name FROM twins ORDER BY slug").fetchall() == [
        ("priya-raman", "Priya Raman"), ("tomas-herrera", "Tomás Herrera")]


def test_duplicates_across_files_of_one_import_keep_the_first(conn: psycopg.Connection, tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", [line(url="https://example.com/same", content="From a.")])
    write(tmp_path / "b.jsonl", [line(url="https://example.com/same", content="From b.")])
    first, second = import_jsonl(conn, tmp_path, max_document_bytes=MAX_BYTES)
    assert first.accepted == 1
    assert second.rejected[0].reason == "duplicate url https://example.com/same (first at a.jsonl line 1)"
    assert raw_rows(conn)["https://example.com/same"][3] == "From a."
