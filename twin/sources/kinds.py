"""The source kinds a twin profile can name, each registered once with how to read it and how to
fingerprint it. Adding a kind is one `SourceKind` entry here plus its reader module."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg

from twin.errors import TwinError
from twin.sources.batch import SourceBatch

if TYPE_CHECKING:
    from twin.profiles import SourceSpec, TwinProfile


@dataclass(frozen=True)
class ReadContext:
    """What a reader may need besides the spec: the database (crawl cache, Mongo state), a scratch
    folder, the document size limit and an S3 client when the profile names S3 sources."""

    conn: psycopg.Connection
    workdir: Path
    max_document_bytes: int
    s3_client: Any = None


@dataclass(frozen=True)
class SourceKind:
    name: str
    read: Callable[[SourceSpec, TwinProfile, ReadContext], list[SourceBatch]]
    # a cheap value that changes when the source may have; None: the kind cannot tell cheaply
    # (crawled pages are only re-read by the recrawl schedule)
    fingerprint: Callable[[SourceSpec, Any], str | None] | None = None
    local: bool = False  # its location is a path, resolved against the profile file's folder


def _read_jsonl(spec: SourceSpec, profile: TwinProfile, ctx: ReadContext) -> list[SourceBatch]:
    from twin.sources.jsonl import jsonl_files, read_jsonl_batch

    return [read_jsonl_batch(file, str(file), max_document_bytes=ctx.max_document_bytes, only_twin=profile.slug)
            for file in jsonl_files(Path(spec.location))]


def _fingerprint_jsonl(spec: SourceSpec, _s3: Any) -> str:
    from twin.sources.jsonl import jsonl_files

    return files_fingerprint(jsonl_files(Path(spec.location)))


def _read_crawl(spec: SourceSpec, profile: TwinProfile, ctx: ReadContext) -> list[SourceBatch]:
    from twin.sources.crawl import crawl

    return [crawl(ctx.conn, spec.location, profile.name)]


def _read_git(spec: SourceSpec, profile: TwinProfile, ctx: ReadContext) -> list[SourceBatch]:
    from twin.sources.git_repository import read_git_repository

    return [read_git_repository(spec.location, profile.name, workdir=ctx.workdir)]


def _fingerprint_git(spec: SourceSpec, _s3: Any) -> str | None:
    from twin.sources.git_repository import git_fingerprint

    return git_fingerprint(spec.location)


def _read_export(spec: SourceSpec, profile: TwinProfile, ctx: ReadContext) -> list[SourceBatch]:
    from twin.sources.exports import read_export

    return [read_export(Path(spec.location), profile.name, base_url=spec.options.get("base_url"))]


def _fingerprint_export(spec: SourceSpec, _s3: Any) -> str | None:
    from twin.sources.exports import export_fingerprint

    return export_fingerprint(Path(spec.location))


def _read_s3(spec: SourceSpec, profile: TwinProfile, ctx: ReadContext) -> list[SourceBatch]:
    from twin.sources.s3 import read_s3_prefix

    return read_s3_prefix(_require_s3(ctx.s3_client, spec), spec.location, author=profile.name,
                          max_document_bytes=ctx.max_document_bytes, workdir=ctx.workdir)


def _fingerprint_s3(spec: SourceSpec, s3_client: Any) -> str | None:
    from twin.sources.s3 import s3_fingerprint

    return s3_fingerprint(_require_s3(s3_client, spec), spec.location)


def _read_mongodb(spec: SourceSpec, profile: TwinProfile, ctx: ReadContext) -> list[SourceBatch]:
    from twin.sources.mongodb import read_mongodb

    with _mongo_client(spec) as client:
        return read_mongodb(client[spec.location], only_author=profile.name,
                            source=_mongo_source_id(spec), max_document_bytes=ctx.max_document_bytes)


def _fingerprint_mongodb(spec: SourceSpec, _s3: Any) -> str | None:
    from twin.sources.mongodb import mongodb_fingerprint

    with _mongo_client(spec) as client:
        return mongodb_fingerprint(client[spec.location])


def _read_warehouse(spec: SourceSpec, profile: TwinProfile, ctx: ReadContext) -> list[SourceBatch]:
    from twin.sources.warehouse import read_warehouse_dump

    return read_warehouse_dump(Path(spec.location), only_author=profile.name, max_document_bytes=ctx.max_document_bytes)


def _fingerprint_warehouse(spec: SourceSpec, _s3: Any) -> str:
    from twin.sources.warehouse import DUMP_FILES

    path = Path(spec.location)
    return files_fingerprint([path] if path.is_file() else
                             sorted(path / name for name in DUMP_FILES if (path / name).is_file()))


SOURCE_KINDS: dict[str, SourceKind] = {kind.name: kind for kind in (
    SourceKind("jsonl", _read_jsonl, _fingerprint_jsonl, local=True),
    SourceKind("crawl", _read_crawl),
    SourceKind("git", _read_git, _fingerprint_git),
    SourceKind("export", _read_export, _fingerprint_export, local=True),
    SourceKind("s3", _read_s3, _fingerprint_s3),
    SourceKind("mongodb", _read_mongodb, _fingerprint_mongodb),
    SourceKind("warehouse", _read_warehouse, _fingerprint_warehouse, local=True),
)}


def source_kind(name: str) -> SourceKind:
    kind = SOURCE_KINDS.get(name)
    if kind is None:
        raise TwinError(f"Unknown source kind {name!r}.", f"use one of {', '.join(SOURCE_KINDS)}.")
    return kind


def read_source(conn: psycopg.Connection, spec: SourceSpec, profile: TwinProfile, *, workdir: Path,
                max_document_bytes: int, s3_client: Any = None) -> list[SourceBatch]:
    """Everything `spec` holds for `profile`'s twin, as batches ready for store_batch."""
    context = ReadContext(conn, workdir, max_document_bytes, s3_client)
    return source_kind(spec.kind).read(spec, profile, context)


def fingerprint_source(spec: SourceSpec, *, s3_client: Any = None) -> str | None:
    """A cheap value that changes when the source's content may have; None when it cannot tell."""
    fingerprint = source_kind(spec.kind).fingerprint
    return fingerprint(spec, s3_client) if fingerprint else None


def profile_fingerprint(profile: TwinProfile, s3_client: Callable[[], Any]) -> str | None:
    """One digest over the twin's fingerprintable sources; None when it has none. What the
    source sensor compares, and what raw/documents records as "processed" (so a CLI run counts)."""
    prints = [f"{spec.key}={fingerprint_source(spec, s3_client=s3_client() if spec.kind == 's3' else None)}"
              for spec in profile.sources if source_kind(spec.kind).fingerprint]
    if not prints:
        return None
    return hashlib.sha256("\n".join(sorted(prints)).encode()).hexdigest()[:16]


def files_fingerprint(files: list[Path]) -> str:
    """Paths, sizes and modification times: changes when any file may have."""
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _require_s3(client: Any, spec: SourceSpec) -> Any:
    if client is None:
        raise TwinError(f"Source {spec.location} needs an S3 client.", "configure the `s3` resource.")
    return client


def _mongo_client(spec: SourceSpec) -> Any:
    import pymongo

    return pymongo.MongoClient(_mongo_uri(spec), serverSelectionTimeoutMS=10_000)


def _mongo_uri(spec: SourceSpec) -> str:
    variable = spec.options.get("uri_env", "MONGODB_URI")
    uri = os.environ.get(variable)
    if not uri:
        raise TwinError(f"MongoDB source {spec.location!r} needs ${variable}.",
                        f"export {variable}=mongodb://host:27017 (or set uri_env in the profile).")
    return uri


def _mongo_source_id(spec: SourceSpec) -> str:
    """`mongodb://host:port/database`, credentials left out, so two servers never share an id."""
    hosts = urlsplit(_mongo_uri(spec)).netloc.rsplit("@", 1)[-1]
    return f"mongodb://{hosts}/{spec.location}"
