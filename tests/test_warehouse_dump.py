"""The LLM Engineer's Handbook warehouse dump importer, on dumps built here (nothing copied)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from orchestration.cli import main
from twin.sources.batch import store_batch
from twin.sources.warehouse import is_warehouse_dump, read_warehouse_dump, warehouse_dumps

ADA, BEN = "0f6e6c3a-1c1e-4c39-9a0e-5d4c7b1e2a01", "6a9d3b70-4e55-4d2b-8f3c-2b7e9d1c4f02"
USERS = [{"_id": ADA, "first_name": "Ada", "last_name": "Byte"},
         {"_id": BEN, "first_name": "Ben", "last_name": "Okafor"}]
ARTICLES = [
    {"_id": "c1d2e3f4-0000-4000-8000-000000000001", "platform": "medium", "author_id": ADA,
     "author_full_name": "Ada Byte", "link": "https://medium.com/@adabyte/small-diffs-1a2b3c",
     "content": {"Title": "Small diffs", "Subtitle": "Why reviewers love them",
                 "Content": "A reviewer can hold forty lines in their head.\n\nShare this post\n\nFour hundred, never."}},
    {"_id": "c1d2e3f4-0000-4000-8000-000000000002", "platform": "blog", "author_id": BEN,
     "author_full_name": "Ben Okafor", "link": "https://benokafor.dev/posts/queues/",
     "content": {"Title": "Queues", "Subtitle": "", "Content": "Queues fail quietly unless you watch their age.",
                 "language": "en"}},
]
POSTS = [{"_id": "p-1", "platform": "linkedin", "author_id": ADA, "author_full_name": "Ada Byte",
          "link": "https://www.linkedin.com/feed/update/urn:li:activity:1", "image": None,
          "content": {"Content": "𝗦𝗵𝗶𝗽 𝘀𝗺𝗮𝗹𝗹. Review fast.", "Title": ""}}]
REPOSITORIES = [{"_id": "r-1", "platform": "github", "author_id": BEN, "author_full_name": "Ben Okafor",
                 "name": "queuewatch", "link": "https://github.com/benokafor/queuewatch",
                 "content": {"README.md": "# queuewatch\n\nAlerts on queue age.", "watch.py": "def age(q):\n    return q.oldest\n"}}]


def write_dump(folder: Path, **collections: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = {"users": "UserDocument.json", "articles": "ArticleDocument.json", "posts": "PostDocument.json",
             "repositories": "RepositoryDocument.json"}
    for name, items in collections.items():
        (folder / names[name]).write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return folder


def test_a_dump_folder_imports_with_authors_platforms_and_urls(conn: psycopg.Connection, tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "data_warehouse_raw_data", users=USERS, articles=ARTICLES, posts=POSTS,
                      repositories=REPOSITORIES)
    assert is_warehouse_dump(dump) and warehouse_dumps(tmp_path) == [dump]
    batches = read_warehouse_dump(dump)
    assert [sorted(doc.twin for doc in batch.documents) for batch in batches] == [
        ["ada-byte", "ada-byte"], ["ben-okafor", "ben-okafor", "ben-okafor"]]
    for batch in batches:
        store_batch(conn, batch)
    rows = conn.execute("SELECT twin, author, category, platform, url, title, content FROM raw_documents "
                        "ORDER BY url").fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("ben-okafor", "Ben Okafor", "article", "blog", "https://benokafor.dev/posts/queues/"),
        ("ben-okafor", "Ben Okafor", "repository", "github", "https://github.com/benokafor/queuewatch/blob/main/README.md"),
        ("ben-okafor", "Ben Okafor", "repository", "github", "https://github.com/benokafor/queuewatch/blob/main/watch.py"),
        ("ada-byte", "Ada Byte", "article", "medium", "https://medium.com/@adabyte/small-diffs-1a2b3c"),
        ("ada-byte", "Ada Byte", "post", "linkedin", "https://www.linkedin.com/feed/update/urn:li:activity:1"),
    ]
    small_diffs = rows[3]
    assert small_diffs[5] == "Small diffs"
    assert small_diffs[6].startswith("Why reviewers love them\n\nA reviewer can hold")  # raw keeps the chrome
    assert "Share this post" in small_diffs[6]
    again = [store_batch(conn, batch) for batch in read_warehouse_dump(dump)]
    assert [(s.accepted, s.unchanged) for s in again] == [(0, 2), (0, 3)]


def test_single_dump_files_import_and_missing_users_are_rejected(conn: psycopg.Connection, tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump", users=USERS[:1], articles=ARTICLES)
    orphan = dict(ARTICLES[1], author_full_name=None)
    (dump / "ArticleDocument.json").write_text(json.dumps([ARTICLES[0], orphan]))
    batches = read_warehouse_dump(dump / "ArticleDocument.json")  # the file alone: no users at all
    documents = [doc for batch in batches for doc in batch.documents]
    reasons = [r.reason for batch in batches for r in batch.rejections]
    assert [doc.author for doc in documents] == ["Ada Byte"]  # author_full_name is enough
    assert reasons == [f"no author: author_full_name is missing and author_id {BEN} is not in users"]
    with_users = read_warehouse_dump(dump)
    assert [r.reason for batch in with_users for r in batch.rejections] == reasons  # Ben is not in users
    for batch in with_users:
        store_batch(conn, batch)
    assert conn.execute("SELECT count(*) FROM import_rejections").fetchone()[0] == 1


def test_a_file_that_is_not_json_or_an_unknown_collection_is_a_rejection(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump", users=USERS, posts=POSTS)
    (dump / "ArticleDocument.json").write_text("{ this is not json")
    (dump / "RepositoryDocument.json").write_text(json.dumps({"not": "a list"}))
    (dump / "QueryDocument.json").write_text("[]")
    batches = read_warehouse_dump(dump)
    assert [doc.url for batch in batches for doc in batch.documents] == [POSTS[0]["link"]]  # the rest still reads
    reasons = sorted(r.reason for batch in batches for r in batch.rejections)
    assert reasons[0].startswith("ArticleDocument.json is not JSON (")
    assert reasons[1].startswith("QueryDocument.json: not a collection of the dump (expected ArticleDocument.json")
    assert reasons[2] == "RepositoryDocument.json: expected a JSON list of documents, got dict"


def test_twin_import_detects_a_dump_and_jsonl_alike(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_dump(tmp_path / "corpus" / "handbook", users=USERS, articles=ARTICLES)
    (tmp_path / "corpus" / "more.jsonl").write_text(json.dumps({
        "author": "Ada Byte", "category": "post", "platform": "x", "url": "https://x.com/ada/1",
        "content": "Ship small.", "published_at": "13-Jul-2024"}) + "\n")
    assert main(["import", str(tmp_path / "corpus")]) == 0  # a folder holding JSONL files and a dump
    out = capsys.readouterr().out
    assert "more.jsonl: 1 accepted" in out and out.count("handbook: 1 accepted") == 2
    assert "twins: ada-byte, ben-okafor" in out
    assert main(["import", str(tmp_path / "corpus" / "handbook" / "ArticleDocument.json")]) == 0
    again = capsys.readouterr().out  # one of the dump's files alone is the same source: nothing new
    assert again.count("handbook: 0 accepted, 0 updated, 1 unchanged") == 2


def test_a_twin_profile_can_name_a_dump_as_its_source(conn: psycopg.Connection, tmp_path: Path) -> None:
    from twin.profiles import load_profiles
    from twin.sources.kinds import fingerprint_source, read_source

    dump = write_dump(tmp_path / "dump", users=USERS, articles=ARTICLES, posts=POSTS)
    profiles = tmp_path / "twins.yaml"
    profiles.write_text("twins:\n  - name: Ada Byte\n    sources:\n      - warehouse: dump\n")
    [profile] = load_profiles(profiles)
    [spec] = profile.sources
    batches = read_source(conn, spec, profile, workdir=tmp_path / "work", max_document_bytes=1_000_000)
    assert [doc.url for batch in batches for doc in batch.documents] == [ARTICLES[0]["link"], POSTS[0]["link"]]
    first = fingerprint_source(spec)
    assert first == fingerprint_source(spec)
    (dump / "PostDocument.json").write_text(json.dumps(POSTS * 1 + [dict(POSTS[0], _id="p-2", link="https://x.com/2")]))
    assert fingerprint_source(spec) != first
