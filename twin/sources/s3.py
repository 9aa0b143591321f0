"""S3 source: every `*.jsonl` file and export `*.zip` under an `s3://bucket/prefix`.

Takes a boto3 S3 client (Dagster's `S3Resource.get_client()` gives one); stateless: unchanged
documents are counted by `store_documents`, and `s3_fingerprint` tells a sensor when to look.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from twin.documents import twin_slug
from twin.errors import TwinError
from twin.raw_store import rejection, size_problem
from twin.settings import DEFAULT_MAX_DOCUMENT_BYTES
from twin.sources.batch import SourceBatch
from twin.sources.jsonl import read_jsonl_batch

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix` as (bucket, prefix); TwinError names a URI that is not one."""
    parts = urlsplit(uri.strip())
    if parts.scheme != "s3" or not _BUCKET.match(parts.netloc) or parts.query or parts.fragment:
        raise TwinError(f"{uri!r} is not an S3 URI.", "write it as s3://bucket/prefix (prefix optional).")
    return parts.netloc, parts.path.lstrip("/")


def read_s3_prefix(
    client: Any,
    uri: str,
    *,
    author: str | None = None,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    workdir: Path,
) -> list[SourceBatch]:
    """One batch per object under the prefix, named `s3://bucket/key`; `author` owns export zips.

    JSONL lines name their authors; with `author`, lines of other twins are passed over. A url
    repeated across JSONL objects keeps its first line. Objects are downloaded into `workdir`
    one at a time and removed once read.
    """
    bucket, prefix = parse_s3_uri(uri)
    first_seen: dict[tuple[str, str], str] = {}
    batches = []
    for index, key in enumerate(_keys(client, bucket, prefix)):
        local = workdir / f"{index:06d}" / _file_name(key)
        try:
            batches.append(_read_object(client, bucket, key, local, author, max_document_bytes, first_seen))
        finally:
            shutil.rmtree(local.parent, ignore_errors=True)
    return batches


def _read_object(
    client: Any, bucket: str, key: str, local: Path, author: str | None, max_document_bytes: int,
    first_seen: dict[tuple[str, str], str],
) -> SourceBatch:
    """One object as a batch: its documents, or a rejection saying why it gave none."""
    object_uri = f"s3://{bucket}/{key}"
    suffix = PurePosixPath(key).suffix.lower()
    if suffix not in (".jsonl", ".zip"):
        found = suffix or "(no extension)"
        return _rejected(object_uri, f"unsupported object type {found}; expected .jsonl or an export .zip")
    if suffix == ".zip" and author is None:
        return _rejected(object_uri, "export archives need a twin name (give the author)")
    try:
        _download(client, bucket, key, local)
    except (BotoCoreError, ClientError, OSError) as exc:
        return _rejected(object_uri, f"download failed: {exc}")
    if suffix == ".zip":
        assert author is not None
        return _read_archive(local, object_uri, author, max_document_bytes)
    only_twin = twin_slug(author) if author is not None else None
    return read_jsonl_batch(local, object_uri, max_document_bytes=max_document_bytes, only_twin=only_twin,
                            first_seen=first_seen)


def s3_fingerprint(client: Any, uri: str) -> str:
    """A hash of the (key, ETag, size) listing under the prefix; changes when any object does."""
    bucket, prefix = parse_s3_uri(uri)
    digest = hashlib.sha256()
    for page in _pages(client, bucket, prefix):
        for item in page.get("Contents", []):
            digest.update(f"{item['Key']}\x1f{item.get('ETag', '')}\x1f{item.get('Size', 0)}\x1e".encode())
    return digest.hexdigest()


def _pages(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """The listing pages; a listing that fails (no bucket, no access) is a TwinError."""
    try:
        yield from client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    except (BotoCoreError, ClientError) as exc:
        raise TwinError(f"Cannot list s3://{bucket}/{prefix}: {exc}",
                        "check the bucket name, the credentials and the endpoint URL.") from None


def _keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Object keys in listing order, without folder markers (`dir/`)."""
    for page in _pages(client, bucket, prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                yield item["Key"]


def _download(client: Any, bucket: str, key: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        with path.open("wb") as handle:
            shutil.copyfileobj(body, handle, length=1 << 20)
    finally:
        body.close()


def _read_archive(path: Path, object_uri: str, author: str, max_document_bytes: int) -> SourceBatch:
    """An export archive's batch, renamed after the object; documents over the size limit rejected."""
    from twin.sources.exports import read_export  # imported only when an archive is met

    try:
        batch = read_export(path, author)
    except Exception as exc:  # an unreadable archive is one rejection, never the end of the listing
        return _rejected(object_uri, f"could not read export archive: {type(exc).__name__}: {exc}")
    local_source = batch.source
    batch.source = object_uri
    batch.rejections = [  # an archive refused whole names the local download: name the object
        replace(r, line=object_uri) if r.line == local_source else r for r in batch.rejections
    ]
    # Numbers past every number the export used: (import, line_number) is a primary key.
    next_number = max((r.line_number for r in batch.rejections), default=0) + len(batch.documents) + 1
    kept = []
    for doc in batch.documents:
        if problem := size_problem(doc.content, max_document_bytes):
            batch.rejections.append(rejection(next_number, problem, doc.url))
            next_number += 1
        else:
            kept.append(doc)
    batch.documents = kept
    return batch


def _rejected(object_uri: str, reason: str) -> SourceBatch:
    batch = SourceBatch(source=object_uri)
    batch.reject(object_uri, reason)
    return batch


def _file_name(key: str) -> str:
    """The key's last part as a safe local file name (keys may hold `..` or odd characters)."""
    name = re.sub(r"[^\w.\-]+", "_", PurePosixPath(key).name)
    return name if name.strip(".") else "object"
