"""S3 source against moto's S3 server on 127.0.0.1 (real HTTP, real boto3 client, no patching)."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from dagster_aws.s3 import S3Resource
from moto.server import ThreadedMotoServer

from twin.errors import TwinError
from twin.sources.batch import store_batch
from twin.sources.s3 import read_s3_prefix, s3_fingerprint

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"twin-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def line(**overrides: object) -> str:
    record = {"author": "Ada Byte", "category": "post", "platform": "linkedin",
              "url": "https://example.com/p/1", "title": "", "content": "Ship small, ship often.",
              "published_at": "2024-05-01"}
    record.update(overrides)
    return json.dumps(record)


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def linkedin_export(long_share: bool = False) -> bytes:
    """A zip shaped like LinkedIn's data export: Shares.csv with the posts."""
    shares = (
        "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility\n"
        '2024-03-05 10:15:00,https://www.linkedin.com/feed/update/urn:li:share:1,'
        '"Postgres autovacuum is a budget, not a janitor.",,,MEMBER_NETWORK\n'
        '2024-04-01 08:00:00,https://www.linkedin.com/feed/update/urn:li:share:2,'
        '"Small PRs get reviewed; large PRs get approved.",,,MEMBER_NETWORK\n'
    )
    if long_share:
        shares += '2024-04-02 08:00:00,https://www.linkedin.com/feed/update/urn:li:share:3,"' + "long " * 100 + '",,,\n'
        shares += "2024-04-03 08:00:00,https://www.linkedin.com/feed/update/urn:li:share:4,,,,\n"  # a repost
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Shares.csv", shares)
        archive.writestr("Profile.csv", "First Name,Last Name\nAda,Byte\n")
    return buffer.getvalue()


def stored(conn: psycopg.Connection) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in conn.execute(
        "SELECT url, twin, category, content, source FROM raw_documents")}


def rejections(conn: psycopg.Connection) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for source, reason in conn.execute(
        "SELECT i.source, r.reason FROM import_rejections r JOIN imports i ON i.id = r.import_id "
        "ORDER BY r.import_id, r.line_number"
    ):
        found.setdefault(source, []).append(reason)
    return found


def test_jsonl_objects_land_with_their_rejections_and_other_objects_are_refused(
    conn: psycopg.Connection, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="twins/ada.jsonl", Body=jsonl(
        line(url="https://example.com/p/1"),
        "{not json",
        line(url="https://example.com/p/2", content=""),
        line(url="https://example.com/a/1", category="article", title="Bloat", content="word " * 300),
    ))
    s3.put_object(Bucket=bucket, Key="twins/nested/grace.JSONL", Body=jsonl(
        line(author="Grace Hopper", url="https://example.com/g/1", content="Found a moth."),
        line(author="Grace Hopper", url="https://example.com/p/1", content="Same url, other twin: fine."),
    ))
    s3.put_object(Bucket=bucket, Key="twins/dup.jsonl", Body=jsonl(line(url="https://example.com/p/1")))
    s3.put_object(Bucket=bucket, Key="twins/notes.txt", Body=b"hello")
    s3.put_object(Bucket=bucket, Key="twins/README", Body=b"hello")
    s3.put_object(Bucket=bucket, Key="twins/folder/", Body=b"")
    s3.put_object(Bucket=bucket, Key="twins/export.zip", Body=linkedin_export())
    s3.put_object(Bucket=bucket, Key="twins/cold.jsonl", Body=jsonl(line(url="https://example.com/cold")),
                  StorageClass="GLACIER")
    s3.put_object(Bucket=bucket, Key="elsewhere/zed.jsonl", Body=jsonl(line(url="https://example.com/z")))

    workdir = tmp_path / "work"
    batches = read_s3_prefix(s3, f"s3://{bucket}/twins/", max_document_bytes=1000, workdir=workdir)
    uri = f"s3://{bucket}/twins/"
    assert [batch.source for batch in batches] == [
        uri + "README", uri + "ada.jsonl", uri + "cold.jsonl", uri + "dup.jsonl", uri + "export.zip",
        uri + "nested/grace.JSONL", uri + "notes.txt",
    ]
    assert list(workdir.iterdir()) == []  # every download is removed once read
    for batch in batches:
        store_batch(conn, batch)

    rows = stored(conn)
    assert set(rows) == {"https://example.com/p/1", "https://example.com/g/1"}
    assert rows["https://example.com/g/1"] == ("grace-hopper", "post", "Found a moth.", uri + "nested/grace.JSONL")
    twins = {row[0] for row in conn.execute("SELECT twin FROM raw_documents WHERE url = 'https://example.com/p/1'")}
    assert twins == {"ada-byte", "grace-hopper"}

    reasons = rejections(conn)
    assert reasons[uri + "ada.jsonl"][0].startswith("invalid JSON")
    assert reasons[uri + "ada.jsonl"][1] == "content is empty"
    assert "over the 0.0 MB limit" in reasons[uri + "ada.jsonl"][2]
    assert reasons[uri + "dup.jsonl"] == ["duplicate url https://example.com/p/1 (first at ada.jsonl line 1)"]
    assert reasons[uri + "notes.txt"] == ["unsupported object type .txt; expected .jsonl or an export .zip"]
    assert reasons[uri + "README"] == ["unsupported object type (no extension); expected .jsonl or an export .zip"]
    assert reasons[uri + "export.zip"] == ["export archives need a twin name (give the author)"]
    [cold] = reasons[uri + "cold.jsonl"]
    assert cold.startswith("download failed:") and "InvalidObjectState" in cold
    assert len(reasons) == 6  # grace.JSONL had nothing to reject


def test_reread_is_unchanged_and_the_fingerprint_follows_the_listing(
    conn: psycopg.Connection, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="a.jsonl", Body=jsonl(line(url="https://example.com/1")))
    s3.put_object(Bucket=bucket, Key="b.jsonl", Body=jsonl(line(url="https://example.com/2")))
    uri = f"s3://{bucket}"
    before = s3_fingerprint(s3, uri)
    first = [store_batch(conn, b) for b in read_s3_prefix(s3, uri, workdir=tmp_path)]
    assert [(s.accepted, s.unchanged) for s in first] == [(1, 0), (1, 0)]
    again = [store_batch(conn, b) for b in read_s3_prefix(s3, uri, workdir=tmp_path)]
    assert [(s.accepted, s.updated, s.unchanged) for s in again] == [(0, 0, 1), (0, 0, 1)]
    assert s3_fingerprint(s3, uri) == before

    edit = jsonl(line(url="https://example.com/2", content="Ship small, ship later."))  # same size: the ETag tells
    assert len(edit) == len(jsonl(line(url="https://example.com/2")))
    s3.put_object(Bucket=bucket, Key="b.jsonl", Body=edit)
    assert s3_fingerprint(s3, uri) != before
    assert s3_fingerprint(s3, f"s3://{bucket}/a") == s3_fingerprint(s3, f"s3://{bucket}/a.jsonl")
    edited = [store_batch(conn, b) for b in read_s3_prefix(s3, uri, workdir=tmp_path)]
    assert [(s.accepted, s.updated, s.unchanged) for s in edited] == [(0, 0, 1), (0, 1, 0)]
    assert stored(conn)["https://example.com/2"][2] == "Ship small, ship later."


def test_with_a_twin_name_jsonl_lines_of_other_twins_are_passed_over(
    conn: psycopg.Connection, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="mixed.jsonl", Body=jsonl(
        line(url="https://example.com/ada"),
        line(author="Grace Hopper", url="https://example.com/grace"),
        "{broken",
    ))
    [batch] = read_s3_prefix(s3, f"s3://{bucket}/mixed.jsonl", author="Grace Hopper", workdir=tmp_path)
    summary = store_batch(conn, batch, only_twin="grace-hopper")
    assert summary.accepted == 1 and [r.line_number for r in summary.rejected] == [3]
    assert {url: row[0] for url, row in stored(conn).items()} == {"https://example.com/grace": "grace-hopper"}


def test_listing_pages_past_a_thousand_objects(s3: Any, bucket: str, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"many/{i:04d}.txt", Body=b""), range(1001)))
    batches = read_s3_prefix(s3, f"s3://{bucket}/many/", workdir=tmp_path)
    assert len(batches) == 1001
    assert batches[-1].source == f"s3://{bucket}/many/1000.txt"
    before = s3_fingerprint(s3, f"s3://{bucket}/many/")
    s3.delete_object(Bucket=bucket, Key="many/1000.txt")  # the only object on the second page
    assert s3_fingerprint(s3, f"s3://{bucket}/many/") != before


@pytest.mark.parametrize("uri", ["bucket/prefix", "s3:/bucket", "s3://", "https://bucket/x", "s3://Bad_Bucket/x"])
def test_a_bad_uri_is_a_twin_error_naming_it(s3: Any, uri: str, tmp_path: Path) -> None:
    with pytest.raises(TwinError, match="is not an S3 URI") as error:
        read_s3_prefix(s3, uri, workdir=tmp_path)
    assert repr(uri) in error.value.message
    with pytest.raises(TwinError, match="is not an S3 URI"):
        s3_fingerprint(s3, uri)


def test_a_missing_bucket_is_a_twin_error(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(TwinError, match="Cannot list s3://no-such-bucket-here/x") as error:
        read_s3_prefix(s3, "s3://no-such-bucket-here/x", workdir=tmp_path)
    assert "NoSuchBucket" in error.value.message and error.value.fix


def test_dagster_s3_resource_client_reads_the_prefix(
    conn: psycopg.Connection, endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/ada.jsonl", Body=jsonl(line(url="https://example.com/r")))
    resource = S3Resource(endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client = resource.get_client()
    [batch] = read_s3_prefix(client, f"s3://{bucket}/in/", workdir=tmp_path)
    assert store_batch(conn, batch).accepted == 1
    assert s3_fingerprint(client, f"s3://{bucket}/in/") == s3_fingerprint(s3, f"s3://{bucket}/in/")


def test_linkedin_export_zip_becomes_the_twins_posts(
    conn: psycopg.Connection, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="exports/ada-linkedin.zip", Body=linkedin_export(long_share=True))
    s3.put_object(Bucket=bucket, Key="exports/broken.zip", Body=b"this is not a zip file")
    uri = f"s3://{bucket}/exports/"
    batches = read_s3_prefix(s3, uri, author="Ada Byte", max_document_bytes=200, workdir=tmp_path)
    assert [batch.source for batch in batches] == [uri + "ada-linkedin.zip", uri + "broken.zip"]
    for batch in batches:
        store_batch(conn, batch)
    rows = {row[0]: row[1:] for row in conn.execute(
        "SELECT url, twin, category, platform, content, published_at, source FROM raw_documents")}
    assert rows == {
        "https://www.linkedin.com/feed/update/urn:li:share:1": (
            "ada-byte", "post", "linkedin", "Postgres autovacuum is a budget, not a janitor.",
            date(2024, 3, 5), uri + "ada-linkedin.zip"),
        "https://www.linkedin.com/feed/update/urn:li:share:2": (
            "ada-byte", "post", "linkedin", "Small PRs get reviewed; large PRs get approved.",
            date(2024, 4, 1), uri + "ada-linkedin.zip"),
    }
    lines = {row[0]: row[1] for row in conn.execute("SELECT line, reason FROM import_rejections")}
    assert lines["https://www.linkedin.com/feed/update/urn:li:share:3"].startswith("content is 0.0 MB, over")
    assert lines[uri + "broken.zip"].startswith("broken.zip is not a zip archive")  # named by its S3 uri
    assert "ShareCommentary is empty" in lines["2024-04-03 08:00:00,https://www.linkedin.com/feed/update/urn:li:share:4,,,,"]
    assert len(lines) == 3

    again = [store_batch(conn, b) for b in read_s3_prefix(s3, uri, author="Ada Byte", max_document_bytes=200,
                                                           workdir=tmp_path)]
    assert (again[0].accepted, again[0].updated, again[0].unchanged) == (0, 0, 2)
