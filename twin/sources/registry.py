"""Reading a profile's sources and fingerprinting them: one entry point per source kind."""

from __future__ import annotations

from collections.abc import Callable

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

import psycopg

from twin.errors import TwinError
from twin.profiles import SourceSpec, TwinProfile
from twin.sources.batch import SourceBatch

# kinds whose change a sensor can see cheaply; crawled pages are only re-read by the schedule
FINGERPRINTED_KINDS = ("jsonl", "git", "export", "s3", "mongodb", "warehouse")


def read_source(
    conn: psycopg.Connection,
    spec: SourceSpec,
    profile: TwinProfile,
    *,
    workdir: Path,
    max_document_bytes: int,
    s3_client: Any = None,
) -> list[SourceBatch]:
    """Everything `spec` holds for `profile`'s twin, as batches ready for store_batch."""
    if spec.kind == "jsonl":
        from twin.sources.jsonl import jsonl_files, read_jsonl_batch

        return [read_jsonl_batch(file, str(file), max_document_bytes=max_document_bytes,
                                 only_twin=profile.slug) for file in jsonl_files(Path(spec.location))]
    if spec.kind == "crawl":
        from twin.sources.web import crawl

        return [crawl(conn, spec.location, profile.name)]
    if spec.kind == "git":
        from twin.sources.git_repository import read_git_repository

        return [read_git_repository(spec.location, profile.name, workdir=workdir)]
    if spec.kind == "export":
        from twin.sources.exports import read_export

        return [read_export(Path(spec.location), profile.name, base_url=spec.options.get("base_url"))]
    if spec.kind == "s3":
        from twin.sources.s3 import read_s3_prefix

        return read_s3_prefix(_require_s3(s3_client, spec), spec.location, author=profile.name,
                              max_document_bytes=max_document_bytes, workdir=workdir)
    if spec.kind == "mongodb":
        from twin.sources.mongodb import read_mongodb

        with _mongo_client(spec) as client:
            return read_mongodb(conn, client[spec.location], only_author=profile.name,
                                source=_mongo_source_id(spec), max_document_bytes=max_document_bytes)
    if spec.kind == "warehouse":
        from twin.sources.warehouse import read_warehouse_dump

        return read_warehouse_dump(Path(spec.location), only_author=profile.name,
                                   max_document_bytes=max_document_bytes)
    raise TwinError(f"Unknown source kind {spec.kind!r}.", "use jsonl, crawl, git, export, s3, mongodb or warehouse.")


def profile_fingerprint(profile: TwinProfile, s3_client: Callable[[], Any]) -> str | None:
    """One digest over the twin's fingerprintable sources; None when it has none. What the
    source sensor compares, and what raw/documents records as "processed" (so a CLI run counts)."""
    prints = []
    for spec in profile.sources:
        if spec.kind in FINGERPRINTED_KINDS:
            prints.append(f"{spec.key}={fingerprint_source(spec, s3_client=s3_client() if spec.kind == 's3' else None)}")
    if not prints:
        return None
    return hashlib.sha256("\n".join(sorted(prints)).encode()).hexdigest()[:16]


def fingerprint_source(spec: SourceSpec, *, s3_client: Any = None) -> str | None:
    """A cheap value that changes when the source's content may have; None when it cannot tell."""
    if spec.kind == "jsonl":
        from twin.sources.jsonl import jsonl_files

        return _files_fingerprint(jsonl_files(Path(spec.location)))
    if spec.kind == "warehouse":
        from twin.sources.warehouse import DUMP_FILES

        path = Path(spec.location)
        return _files_fingerprint([path] if path.is_file() else
                                  sorted(path / name for name in DUMP_FILES if (path / name).is_file()))
    if spec.kind == "git":
        from twin.sources.git_repository import git_fingerprint

        return git_fingerprint(spec.location)
    if spec.kind == "export":
        from twin.sources.exports import export_fingerprint

        return export_fingerprint(Path(spec.location))
    if spec.kind == "s3":
        from twin.sources.s3 import s3_fingerprint

        return s3_fingerprint(_require_s3(s3_client, spec), spec.location)
    if spec.kind == "mongodb":
        from twin.sources.mongodb import mongodb_fingerprint

        with _mongo_client(spec) as client:
            return mongodb_fingerprint(client[spec.location])
    return None


def _files_fingerprint(files: list[Path]) -> str:
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
