"""Data-export archives (LinkedIn, Medium, Substack) built like the real ones, read and stored for real."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import date
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.exports import (
    MEDIUM_POSTS,
    SHARES,
    SUBSTACK_HEADER,
    MediumPost,
    Share,
    SubstackPost,
    build_linkedin_export,
    build_lying_header_zip,
    build_medium_export,
    build_substack_export,
    build_zip_bomb,
    build_zip_slip,
    csv_bytes,
    medium_post_html,
    write_zip,
)
from twin.documents import Category
from twin.errors import TwinError
from twin.sources.batch import SourceBatch, store_batch
from twin.sources.exports import detect_export_format, export_fingerprint, read_export

AUTHOR = "Maya Lindqvist"


def read(path: Path, **options: object) -> SourceBatch:
    batch = read_export(path, AUTHOR, **options)  # type: ignore[arg-type]
    assert isinstance(batch, SourceBatch)
    assert batch.source == str(path.resolve())
    return batch


def reasons(batch: SourceBatch) -> list[str]:
    return [rejection.reason for rejection in batch.rejections]


def assert_refused(batch: SourceBatch, *fragments: str) -> None:
    """The archive as a whole became one rejection and nothing else."""
    assert batch.documents == []
    [rejection] = batch.rejections
    assert rejection.line == batch.source
    for fragment in fragments:
        assert fragment in rejection.reason


# LinkedIn


def test_linkedin_shares_become_posts_with_multiline_quoted_commentary(tmp_path: Path) -> None:
    path = build_linkedin_export(tmp_path)
    assert detect_export_format(path) == "linkedin"
    batch = read(path)
    docs = {doc.url: doc for doc in batch.documents}
    assert list(docs) == [SHARES[0].link, SHARES[1].link]
    first = docs[SHARES[0].link]
    assert first.content == SHARES[0].commentary  # newlines and "quotes" exactly as written
    assert first.title == 'Three things I learned shipping our "boring" batch loader:'
    assert (first.category, first.platform, first.author) == (Category.POST, "linkedin", AUTHOR)
    assert first.published_at == date(2024, 3, 5)
    assert docs[SHARES[1].link].published_at == date(2024, 2, 11)
    # The repost without text is rejected: line 8, since the first share's commentary spans lines 2-6.
    assert reasons(batch) == ["Shares.csv line 8: ShareCommentary is empty (a repost without text?)"]
    assert SHARES[2].link in batch.rejections[0].line


def test_linkedin_shares_under_another_name_and_header_case(tmp_path: Path) -> None:
    header = ("date", "sharelink", "sharecommentary", "sharedurl", "mediaurl", "visibility")
    path = build_linkedin_export(tmp_path, SHARES[:2], csv_name="Posts/Shares_2024.csv", header=header)
    assert detect_export_format(path) == "linkedin"
    assert [doc.url for doc in read(path).documents] == [SHARES[0].link, SHARES[1].link]


def test_linkedin_cp1252_csv_decodes(tmp_path: Path) -> None:
    share = Share("2024-05-01 09:00:00", "https://www.linkedin.com/feed/update/urn:li:share:1",
                  "Café talk — “quoted” naïve ideas for €5, déjà vu.")
    batch = read(build_linkedin_export(tmp_path, [share], encoding="cp1252"))
    assert [doc.content for doc in batch.documents] == [share.commentary]
    assert batch.rejections == []


def test_linkedin_broken_quoting_rejects_the_row_and_keeps_the_others(tmp_path: Path) -> None:
    good = csv_bytes(("Date", "ShareLink", "ShareCommentary", "SharedUrl", "MediaUrl", "Visibility"), [
        ("2024-01-01 10:00:00", "https://www.linkedin.com/feed/update/1", "First, fine.", "", "", "PUBLIC"),
    ])
    link = "2024-01-0{0} 10:00:00,https://www.linkedin.com/feed/update/{0},"
    broken = good + "".join([
        link.format(2) + '"Unterminated quote starts here,,,PUBLIC\r\n',
        link.format(3) + '"Third, ""quoted"", fine.",,,PUBLIC\r\n',
        link.format(4) + '"Stray"text after quote,,,PUBLIC\r\n',
        link.format(5) + "Fifth,,,PUBLIC\r\n",
    ]).encode("utf-8")
    path = write_zip(tmp_path / "broken.zip", {"Shares.csv": broken})
    batch = read(path)
    assert [doc.content for doc in batch.documents] == ["First, fine.", 'Third, "quoted", fine.', "Fifth"]
    found = reasons(batch)
    assert len(found) == 2
    assert found[0].startswith("Shares.csv line 3: broken CSV quoting (")
    assert found[1].startswith("Shares.csv line 5: broken CSV quoting (")
    assert "expected comma-separated fields with quotes doubled inside quoted fields" in found[0]
    assert "Unterminated quote" in batch.rejections[0].line


def test_linkedin_unexpected_header_names_the_file_and_the_columns(tmp_path: Path) -> None:
    header = ("Date", "Link", "Text")
    path = write_zip(tmp_path / "odd.zip", {"Shares.csv": csv_bytes(header, [("2024-01-01", "x", "y")])})
    batch = read(path)
    assert batch.documents == []
    assert reasons(batch) == ["Shares.csv: unexpected header (Date, Link, Text); expected the columns "
                              "Date, ShareLink, ShareCommentary (missing ShareLink, ShareCommentary)"]


def test_bad_rows_are_rejected_with_their_reason(tmp_path: Path) -> None:
    shares = [
        Share("not a date", "https://www.linkedin.com/feed/update/1", "When?"),
        Share("2024-01-02 10:00:00", "", "No link"),
        Share("2024-01-03 10:00:00", "https://www.linkedin.com/feed/update/3", "Kept"),
        Share("2024-01-04 10:00:00", "https://www.linkedin.com/feed/update/3", "Same url again"),
    ]
    batch = read(build_linkedin_export(tmp_path, shares))
    assert [doc.content for doc in batch.documents] == ["Kept"]
    assert reasons(batch) == [
        "Shares.csv line 2: date 'not a date' is not a date (expected e.g. 2024-05-01, 2024-05-01T09:30:00Z, "
        "Sat, 13 Jul 2024 09:30:00 GMT, Jul 13, 2024 or 13-Jul-2024)",
        "Shares.csv line 3: ShareLink is empty, so the post has no url",
        "Shares.csv line 5: duplicate url https://www.linkedin.com/feed/update/3 (first at Shares.csv line 4)",
    ]


# Medium


def test_medium_posts_become_markdownish_articles_and_drafts_are_skipped(tmp_path: Path) -> None:
    path = build_medium_export(tmp_path)
    assert detect_export_format(path) == "medium"
    batch = read(path)
    assert batch.rejections == []
    assert batch.skipped == {"draft": 1}
    docs = {doc.title: doc for doc in batch.documents}
    assert set(docs) == {"Postgres Bloat: A Field Guide", "Café notes"}
    bloat = docs["Postgres Bloat: A Field Guide"]
    assert (bloat.category, bloat.platform) == (Category.ARTICLE, "medium")
    assert bloat.url == MEDIUM_POSTS[0].canonical
    assert bloat.published_at == date(2024, 4, 2)
    assert bloat.content == (
        "The alert said the disk was at 91 percent.\n\n"
        "### Why bloat happens\n\n"  # heading levels are kept (<h3>, <h4>)
        "MVCC keeps old rows around.\nUntil VACUUM comes.\n\n"
        "- dead tuples\n- free space map\n\n"
        "#### A smaller heading\n\n"
        "```\nSELECT relname,\n    n_dead_tup\nFROM pg_stat_user_tables;\n```\n\n"
        "> Measure before you VACUUM FULL."
    )
    # That page is latin-1 (declared in its meta tag).
    assert docs["Café notes"].content == "Notes from the café: naïve façades, Übermaß and Größe."


def test_medium_latin1_page_without_a_declared_charset_decodes(tmp_path: Path) -> None:
    post = MediumPost("2023-01-01_Naive-1", "Été", "<p>Un été naïf à la façade, déjà.</p>",
                      "2023-01-01T00:00:00Z", "https://medium.com/@m/ete-1", encoding="latin-1")
    html = medium_post_html(post).replace(b"; charset=iso-8859-1", b"")  # only the bytes tell the encoding
    assert b"charset" not in html
    path = write_zip(tmp_path / "nometa.zip", {"posts/2023-01-01_Naive-1.html": html})
    [doc] = read(path).documents
    assert (doc.title, doc.content) == ("Été", "Un été naïf à la façade, déjà.")


def test_medium_page_without_body_or_link_is_rejected_and_a_deep_one_read(tmp_path: Path) -> None:
    members = {
        "posts/2024-01-00_Deep-0.html": "<html><body><a class='p-canonical' href='https://medium.com/p/0'>c</a>"
                                        "<section data-field='body'>" + "<div>" * 5000 + "deep" + "</div>" * 5000
                                        + "</section></body></html>",
        "posts/2024-01-01_No-body-1.html": "<html><body><h1 class='p-name'>No body</h1>"
                                           "<a class='p-canonical' href='https://medium.com/p/1'>c</a></body></html>",
        "posts/2024-01-02_No-link-2.html": "<html><body><h1 class='p-name'>No link</h1>"
                                           "<section data-field='body'><p>Text</p></section></body></html>",
    }
    batch = read(write_zip(tmp_path / "medium.zip", members))
    # the converter walks the tree without recursion, so 5,000 levels of nesting still give the text
    assert [(doc.url, doc.content) for doc in batch.documents] == [("https://medium.com/p/0", "deep")]
    assert reasons(batch) == [
        'posts/2024-01-01_No-body-1.html: no body (<section data-field="body">)',
        'posts/2024-01-02_No-link-2.html: no canonical link (<a class="p-canonical" href=...>)',
    ]


# Substack


def test_substack_published_posts_become_articles_at_the_publication_url(tmp_path: Path) -> None:
    path = build_substack_export(tmp_path)
    assert detect_export_format(path) == "substack"
    batch = read(path, base_url="https://reefnotes.substack.com/")
    assert batch.rejections == []
    assert batch.skipped == {"unpublished": 1}
    docs = {doc.url: doc for doc in batch.documents}
    assert list(docs) == ["https://reefnotes.substack.com/p/the-reef-in-september",
                          "https://reefnotes.substack.com/p/tides-and-tables"]
    reef = docs["https://reefnotes.substack.com/p/the-reef-in-september"]
    assert (reef.title, reef.category, reef.platform) == ("The reef in September", Category.ARTICLE, "substack")
    assert reef.published_at == date(2023, 9, 30)
    assert reef.content == (
        "El Bajo at dawn\n\n"
        "There is a particular silence over a bleaching reef.\n\n"
        "## What bleaching is\n\n"
        "- corals expel their algae\n- the skeleton shows through\n\n"
        "Water at 31 °C for nineteen days."
    )
    default = read(path)
    assert [doc.url for doc in default.documents] == ["https://substack.com/p/the-reef-in-september",
                                                      "https://substack.com/p/tides-and-tables"]


def test_substack_missing_page_bad_post_id_and_latin1_fragment(tmp_path: Path) -> None:
    posts = [
        SubstackPost("1.gone", "2023-01-01T00:00:00Z", "Gone", "<p>never written</p>"),
        SubstackPost("2", "2023-01-02T00:00:00Z", "No slug", "<p>text</p>"),
        SubstackPost("3.ete", "2023-01-03T00:00:00Z", "Été", "<p>Un été naïf, déjà à la façade.</p>"),
    ]
    path = build_substack_export(tmp_path, posts, missing_pages=("1.gone",))
    # Rewrite the last fragment in latin-1, as an old editor would have saved it.
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["posts/3.ete.html"] = "<p>Un été naïf, déjà à la façade.</p>".encode("latin-1")
    batch = read(write_zip(tmp_path / "latin1.zip", members))
    assert [(doc.url, doc.content) for doc in batch.documents] == [
        ("https://substack.com/p/ete", "Un été naïf, déjà à la façade.")]
    assert reasons(batch) == [
        "posts.csv line 2: posts/1.gone.html is missing from the archive",
        "posts.csv line 3: post_id '2' has no slug (expected <number>.<slug>)",
    ]


def test_substack_unexpected_header(tmp_path: Path) -> None:
    header = tuple(column for column in SUBSTACK_HEADER if column != "is_published")
    path = write_zip(tmp_path / "s.zip", {"posts.csv": csv_bytes(header, []), "posts/1.a.html": "<p>x</p>"})
    batch = read(path)
    assert batch.documents == []
    assert reasons(batch)[0].startswith("posts.csv: unexpected header (post_id, post_date, email_sent_at")
    assert reasons(batch)[0].endswith("expected the columns post_id, post_date, is_published, title "
                                      "(missing is_published)")


def test_substack_base_url_must_be_an_address(tmp_path: Path) -> None:
    with pytest.raises(TwinError, match="base_url 'reefnotes' is not an http"):
        read_export(build_substack_export(tmp_path), AUTHOR, base_url="reefnotes")


# Unsafe and unreadable archives


@pytest.mark.parametrize("entry", ["../../outside.txt", "/tmp/absolute.txt", "posts/..\\..\\evil.html"])
def test_zip_slip_refuses_the_whole_archive_and_writes_nothing(tmp_path: Path, entry: str) -> None:
    path = build_zip_slip(tmp_path / "in", entry)
    before = sorted(p for p in tmp_path.rglob("*"))
    batch = read(path)
    assert_refused(batch, "slip.zip refused: entry", "points outside the archive (path traversal)",
                   "nothing was imported")
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_zip_bomb_by_ratio_is_refused(tmp_path: Path) -> None:
    path = build_zip_bomb(tmp_path, megabytes=4)
    assert_refused(read(path), "entry 'Rich_Media.csv' expands", "over the 100:1 limit (a zip bomb?)")
    with pytest.raises(TwinError, match="bomb.zip refused: entry 'Rich_Media.csv' expands"):
        detect_export_format(path)


def test_archive_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    batch = read(build_linkedin_export(tmp_path), max_uncompressed_bytes=1_000)
    assert_refused(batch, "linkedin.zip refused: it expands to", "over the 1 KB cap")


def test_lying_size_header_never_inflates_past_it(tmp_path: Path) -> None:
    batch = read(build_lying_header_zip(tmp_path))
    assert batch.documents == []
    [rejection] = batch.rejections
    assert rejection.line == "Shares.csv"
    assert rejection.reason.startswith("Shares.csv could not be read: Bad CRC-32")


def test_not_a_zip_is_a_clear_error_and_a_rejection(tmp_path: Path) -> None:
    path = tmp_path / "Shares.csv"
    path.write_bytes(csv_bytes(("Date", "ShareLink", "ShareCommentary"), [("2024-01-01", "u", "c")]))
    with pytest.raises(TwinError, match=r"Shares.csv is not a zip archive .*expected a LinkedIn data archive"):
        detect_export_format(path)
    assert_refused(read(path), "Shares.csv is not a zip archive")


def test_unknown_format_names_the_file_and_the_formats(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "photos.zip", {"IMG_0001.jpg": b"\xff\xd8\xff", "notes.txt": "hello"})
    with pytest.raises(TwinError) as error:
        detect_export_format(path)
    assert error.value.message == ("photos.zip is not a LinkedIn, Medium or Substack export "
                                   "(it holds IMG_0001.jpg, notes.txt).")
    assert "Shares.csv" in error.value.fix and "posts/*.html" in error.value.fix and "posts.csv" in error.value.fix
    assert_refused(read(path), "photos.zip is not a LinkedIn, Medium or Substack export")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TwinError, match="nowhere.zip does not exist"):
        read_export(tmp_path / "nowhere.zip", AUTHOR)


def test_fingerprint_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = build_linkedin_export(tmp_path)
    assert export_fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    build_linkedin_export(tmp_path, SHARES[:1])
    assert export_fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# Storage


def test_each_format_stores_and_restoring_changes_nothing(conn: psycopg.Connection, tmp_path: Path) -> None:
    archives = {
        "linkedin": (build_linkedin_export(tmp_path), 2, 1),
        "medium": (build_medium_export(tmp_path), 2, 0),
        "substack": (build_substack_export(tmp_path), 2, 0),
    }
    for name, (path, documents, rejected) in archives.items():
        summary = store_batch(conn, read_export(path, AUTHOR))
        assert (summary.accepted, summary.updated, summary.unchanged, len(summary.rejected)) == \
            (documents, 0, 0, rejected), name
    counts = dict(conn.execute("SELECT platform, count(*) FROM raw_documents GROUP BY platform").fetchall())
    assert counts == {"linkedin": 2, "medium": 2, "substack": 2}
    stored = conn.execute("SELECT content, published_at FROM raw_documents WHERE url = %s",
                          (SHARES[0].link,)).fetchone()
    assert stored == (SHARES[0].commentary, date(2024, 3, 5))
    assert conn.execute("SELECT count(*) FROM import_rejections").fetchone()[0] == 1
    for name, (path, documents, _) in archives.items():
        summary = store_batch(conn, read_export(path, AUTHOR))
        assert (summary.accepted, summary.updated, summary.unchanged) == (0, 0, documents), name


def test_refused_archive_stores_only_its_rejection(conn: psycopg.Connection, tmp_path: Path) -> None:
    summary = store_batch(conn, read_export(build_zip_slip(tmp_path), AUTHOR))
    assert (summary.accepted, len(summary.rejected)) == (0, 1)
    assert conn.execute("SELECT count(*) FROM raw_documents").fetchone()[0] == 0
    [(reason,)] = conn.execute("SELECT reason FROM import_rejections").fetchall()
    assert "path traversal" in reason
