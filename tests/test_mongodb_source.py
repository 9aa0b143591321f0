"""MongoDB source: a warehouse shaped like the reference LLM-Twin implementations, read into
raw_documents. mongomock stands in for the server; the last test uses a real one when given."""

from __future__ import annotations

import os
import uuid
from datetime import date, datetime

import mongomock
import psycopg
import pytest
from pymongo.database import Database

from twin.sources.batch import SourceBatch, store_batch
from twin.sources.mongodb import mongodb_fingerprint, read_mongodb

ADA_ID = "6f2a4c1e-8d3b-4f7a-9c10-2b5e7d9a1f00"
GRACE_ID = "0c9e8f7a-1b2d-4c3e-8f4a-5b6c7d8e9f01"
NOBODY_ID = "ffffffff-0000-4000-8000-000000000000"


def fill_warehouse(db: Database) -> None:
    """Items as the Handbook's crawlers write them, plus the broken ones a real warehouse holds."""
    db.users.insert_many([
        {"_id": ADA_ID, "first_name": "Ada", "last_name": "Byte"},
        {"_id": GRACE_ID, "first_name": "Grace", "last_name": "Hopper"},
    ])
    db.articles.insert_many([
        {"_id": "a1", "platform": "medium", "link": "https://medium.com/@ada/vacuum",
         "content": {"Title": "Tuning autovacuum", "Subtitle": "Bloat, explained",
                     "Content": "Autovacuum falls behind when ...", "language": "en"},
         "author_id": ADA_ID, "author_full_name": "Ada Byte", "published_at": datetime(2024, 5, 1, 9, 30)},
        {"_id": "a2", "platform": "substack", "link": "https://grace.substack.com/p/compilers",
         "content": {"title": "Compilers", "content": "A compiler is a translator."},
         "author_id": GRACE_ID},  # no author_full_name: the name comes from users
        {"_id": "a3", "platform": "medium", "link": "https://medium.com/@ada/empty",
         "content": {"Title": "Draft", "Content": "   "}, "author_full_name": "Ada Byte"},
        {"_id": "a4", "platform": "medium", "link": "https://medium.com/@ghost/x",
         "content": {"Title": "Ghost", "Content": "Who wrote this?"}, "author_id": NOBODY_ID},
        {"_id": "a5", "platform": "medium", "link": "https://medium.com/@ada/vacuum",
         "content": {"Title": "Copy", "Content": "Crawled twice."}, "author_full_name": "Ada Byte"},
        {"_id": "a6", "platform": "medium", "link": "https://medium.com/@ada/when",
         "content": {"Title": "When", "Content": "Some day."}, "author_full_name": "Ada Byte",
         "date": "last tuesday"},
    ])
    db.posts.insert_many([
        {"_id": "p1", "platform": "linkedin", "content": {"text": "Ship small.\nShip often.",
                                                          "image": "https://media.licdn.com/1.png"},
         "author_id": ADA_ID, "author_full_name": "Ada Byte", "image": "https://media.licdn.com/1.png",
         "created_at": "2024-06-02T08:00:00Z"},
        {"_id": "p2", "platform": "LinkedIn", "link": "https://www.linkedin.com/posts/grace-1",
         "content": {"Title": "Bugs", "Body": "Found a moth.", "Footer": "#history"},
         "author_id": GRACE_ID, "author_full_name": "Grace Hopper"},
        {"_id": "p3", "platform": "linkedin", "content": {"text": ""}, "author_full_name": "Grace Hopper"},
        {"_id": "p4", "platform": "linkedin", "content": {"text": "Orphan post"}},
    ])
    db.repositories.insert_many([
        {"_id": "r1", "name": "pgtools", "link": "https://github.com/ada/pgtools", "platform": "github",
         "content": {"src/vacuum.py": "def vacuum():\n    return  'full'\n", "README.md": "# pgtools\n",
                     "empty.txt": "", "logo.bin": b"\x89PNG"},
         "author_id": ADA_ID, "author_full_name": "Ada Byte"},
    ])


@pytest.fixture
def warehouse() -> Database:
    db = mongomock.MongoClient()["twin"]
    fill_warehouse(db)
    return db


def by_twin(batches: list[SourceBatch]) -> dict[str, SourceBatch]:
    return {(batch.documents[0].twin if batch.documents else "?"): batch for batch in batches}


def stored(conn: psycopg.Connection) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in conn.execute(
        "SELECT url, twin, category, platform, title, content, published_at, source FROM raw_documents")}


def rejections(conn: psycopg.Connection) -> dict[str, str]:
    return {row[0]: row[1] for row in conn.execute("SELECT line, reason FROM import_rejections")}


def test_warehouse_items_become_documents_per_twin_and_bad_items_rejections(
    conn: psycopg.Connection, warehouse: Database
) -> None:
    batches = read_mongodb(warehouse)
    assert [batch.source for batch in batches] == ["mongodb://twin"] * 3
    twins = by_twin(batches)
    assert set(twins) == {"ada-byte", "grace-hopper", "?"}  # "?" holds the items without an author
    for batch in batches:
        store_batch(conn, batch)

    rows = stored(conn)
    assert rows["https://medium.com/@ada/vacuum"] == (
        "ada-byte", "article", "medium", "Tuning autovacuum",
        "Bloat, explained\n\nAutovacuum falls behind when ...", date(2024, 5, 1), "mongodb://twin")
    assert rows["https://grace.substack.com/p/compilers"][:5] == (
        "grace-hopper", "article", "substack", "Compilers", "A compiler is a translator.")
    assert rows["mongodb://twin/posts/p1"] == (
        "ada-byte", "post", "linkedin", "", "Ship small.\nShip often.", date(2024, 6, 2), "mongodb://twin")
    assert rows["https://www.linkedin.com/posts/grace-1"][1:5] == (
        "post", "linkedin", "Bugs", "Found a moth.\n\n#history")
    assert rows["https://github.com/ada/pgtools/blob/main/src/vacuum.py"][:5] == (
        "ada-byte", "repository", "github", "src/vacuum.py", "def vacuum():\n    return  'full'\n")
    assert rows["https://github.com/ada/pgtools/blob/main/README.md"][4] == "# pgtools\n"
    assert len(rows) == 6

    reasons = rejections(conn)
    assert reasons["mongodb://twin/articles/a3"] == "content is empty"
    assert reasons["mongodb://twin/articles/a4"] == (
        f"no author: author_full_name is missing and author_id {NOBODY_ID} is not in users")
    assert reasons["https://medium.com/@ada/vacuum"] == (
        "duplicate url https://medium.com/@ada/vacuum (first at mongodb://twin/articles/a1)")
    assert reasons["mongodb://twin/articles/a6"].startswith("date 'last tuesday' is not a date")
    assert reasons["mongodb://twin/posts/p3"] == "content is empty"
    assert reasons["mongodb://twin/posts/p4"] == "no author: author_full_name is missing and no author_id"
    assert reasons["https://github.com/ada/pgtools/blob/main/empty.txt"] == "file empty.txt is empty"
    assert reasons["https://github.com/ada/pgtools/blob/main/logo.bin"] == "file logo.bin is not text (bytes)"
    assert len(reasons) == 8
    assert twins["?"].documents == [] and len(twins["?"].rejections) == 2


def test_reread_is_unchanged_and_an_edit_is_one_update_with_a_new_fingerprint(
    conn: psycopg.Connection, warehouse: Database
) -> None:
    first = [store_batch(conn, batch) for batch in read_mongodb(warehouse, source="mongodb://h/twin")]
    cursor = mongodb_fingerprint(warehouse)
    assert sum(summary.accepted for summary in first) == 6
    assert "posts=4:" in cursor and "repositories=1:" in cursor

    again = [store_batch(conn, batch) for batch in read_mongodb(warehouse, source="mongodb://h/twin")]
    assert [(s.accepted, s.updated) for s in again] == [(0, 0)] * len(again)
    assert sum(summary.unchanged for summary in again) == 6
    assert mongodb_fingerprint(warehouse) == cursor

    warehouse.posts.update_one({"_id": "p1"}, {"$set": {"content.text": "Ship smaller."}})
    assert mongodb_fingerprint(warehouse) != cursor
    edited = [store_batch(conn, batch) for batch in read_mongodb(warehouse, source="mongodb://h/twin")]
    assert sum(summary.updated for summary in edited) == 1
    assert sum(summary.accepted for summary in edited) == 0
    assert stored(conn)["mongodb://twin/posts/p1"][4] == "Ship smaller."


def test_only_author_reads_one_twin_and_prune_removes_what_left_mongo(
    conn: psycopg.Connection, warehouse: Database
) -> None:
    [grace] = read_mongodb(warehouse, only_author="Grace Hopper")
    assert {doc.twin for doc in grace.documents} == {"grace-hopper"}
    assert [r.line for r in grace.rejections] == ["mongodb://twin/posts/p3"]  # p4 has no author: not Grace's
    store_batch(conn, grace)
    warehouse.articles.delete_one({"_id": "a2"})
    warehouse.posts.delete_one({"_id": "p3"})  # with a rejection in the batch, prune would be skipped
    [grace] = read_mongodb(warehouse, only_author="grace-hopper")
    summary = store_batch(conn, grace, prune=True, only_twin="grace-hopper")
    assert summary.deleted == 1 and not summary.prune_skipped
    assert set(stored(conn)) == {"https://www.linkedin.com/posts/grace-1"}


def test_course_layout_owner_id_and_no_full_names(conn: psycopg.Connection) -> None:
    """The LLM-Twin course: no author_full_name, repositories keyed by owner_id and without platform."""
    db = mongomock.MongoClient()["course"]
    user_id = str(uuid.uuid4())
    db.users.insert_one({"_id": user_id, "first_name": "Paul", "last_name": "Iusztin"})
    db.repositories.insert_one({"_id": "r", "name": "tool", "link": "https://gitlab.com/paul/tool",
                                "content": {"main.rs": "fn main() {}\n"}, "owner_id": user_id})
    db.posts.insert_one({"_id": "p", "platform": "linkedin", "content": "plain text post",
                         "author_id": user_id})
    [batch] = read_mongodb(db)
    store_batch(conn, batch)
    rows = stored(conn)
    assert rows["mongodb://course/repositories/r/main.rs"][:5] == (
        "paul-iusztin", "repository", "gitlab.com", "main.rs", "fn main() {}\n")
    assert rows["mongodb://course/posts/p"][4] == "plain text post"
    assert batch.rejections == []


def test_nul_characters_and_oversized_items_do_not_break_the_import(conn: psycopg.Connection) -> None:
    db = mongomock.MongoClient()["twin"]
    db.posts.insert_many([
        {"_id": "nul", "platform": "x", "content": {"text": "a\x00b"}, "author_full_name": "Ada\x00 Byte"},
        {"_id": "big", "platform": "x", "content": {"text": "word " * 300}, "author_full_name": "Ada Byte"},
    ])
    [batch] = read_mongodb(db, max_document_bytes=1000)
    summary = store_batch(conn, batch)
    assert summary.accepted == 1
    assert stored(conn)["mongodb://twin/posts/nul"][4] == "ab"
    assert "over the 0.0 MB limit" in rejections(conn)["mongodb://twin/posts/big"]


def test_empty_database_reads_nothing() -> None:
    db = mongomock.MongoClient()["empty"]
    assert read_mongodb(db) == []
    assert [part.split(":")[0] for part in mongodb_fingerprint(db).split(";")] == [
        "users=0", "articles=0", "posts=0", "repositories=0"]


@pytest.mark.skipif(
    not os.environ.get("TWIN_TEST_MONGODB_URI"),
    reason="needs a real MongoDB server: set TWIN_TEST_MONGODB_URI=mongodb://host:27017",
)
def test_real_mongodb_server_reads_like_mongomock(conn: psycopg.Connection) -> None:
    from pymongo import MongoClient

    client: MongoClient = MongoClient(os.environ["TWIN_TEST_MONGODB_URI"], serverSelectionTimeoutMS=5000)
    name = f"twin_test_{uuid.uuid4().hex[:8]}"
    try:
        fill_warehouse(client[name])
        mock = mongomock.MongoClient()[name]
        fill_warehouse(mock)
        real_batches = read_mongodb(client[name])
        mock_batches = read_mongodb(mock, source="mongodb://mock")
        assert [b.documents for b in real_batches] == [b.documents for b in mock_batches]
        assert [b.rejections for b in real_batches] == [b.rejections for b in mock_batches]
        assert mongodb_fingerprint(client[name]) == mongodb_fingerprint(mock)
    finally:
        client.drop_database(name)
        client.close()
