"""Importing one twin's writing: every source its twins.yaml profile names, plus extra JSONL
files, each stored as one import; then what the twin's raw documents add up to.

raw/documents calls `import_profile` and `raw_snapshot`; so can any other entry point that
imports a profile (the CLI's `twin import` reads paths, not profiles, today).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from twin.profiles import TwinProfile
from twin.raw_store import ImportSummary
from twin.sources.batch import store_batch
from twin.sources.jsonl import import_jsonl
from twin.sources.kinds import profile_fingerprint, read_source


@dataclass
class IngestReport:
    """The imports of one run for one twin, and its sources' fingerprint taken before reading."""

    twin: str
    summaries: list[ImportSummary] = field(default_factory=list)
    source_fingerprint: str | None = None  # None: no fingerprintable source, or it could not be read
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when any import added, updated or deleted a document."""
        return any(summary.changed_twins for summary in self.summaries)


@dataclass(frozen=True)
class RawSnapshot:
    """The twin's raw documents now: counts per category and a digest over (url, content hash)."""

    documents: int
    articles: int
    posts: int
    repository_files: int
    fingerprint: str


def import_profile(
    conn: psycopg.Connection,
    twin: str,
    profile: TwinProfile | None,
    *,
    s3_client: Callable[[], Any],
    max_document_bytes: int,
    paths: Sequence[Path] = (),
    prune: bool = False,
) -> IngestReport:
    """Import every source of `profile` (none when the twin has no profile), then each JSONL
    path, keeping only `twin`'s documents. `s3_client` is called only for an S3 source."""
    report = IngestReport(twin)
    report.source_fingerprint = _fingerprint(profile, s3_client, report.warnings)
    for spec in profile.sources if profile else ():
        with tempfile.TemporaryDirectory(prefix="twin-source-") as workdir:
            client = s3_client() if spec.kind == "s3" else None
            for batch in read_source(conn, spec, profile, workdir=Path(workdir), s3_client=client,
                                     max_document_bytes=max_document_bytes):
                report.summaries.append(store_batch(conn, batch, only_twin=twin, max_document_bytes=max_document_bytes))
    for path in paths:
        report.summaries += import_jsonl(conn, Path(path), only_twin=twin, prune=prune,
                                         max_document_bytes=max_document_bytes)
    return report


def raw_snapshot(conn: psycopg.Connection, twin: str) -> RawSnapshot:
    """Counts and a digest that changes exactly when a document is added, edited or removed
    (raw/documents' data version)."""
    row = conn.execute(
        """SELECT count(*), count(*) FILTER (WHERE category = 'article'),
                  count(*) FILTER (WHERE category = 'post'),
                  count(*) FILTER (WHERE category = 'repository'),
                  md5(coalesce(string_agg(url || ':' || content_hash, ',' ORDER BY url), ''))
           FROM raw_documents WHERE twin = %s""",
        (twin,),
    ).fetchone()
    return RawSnapshot(*row)


def _fingerprint(profile: TwinProfile | None, s3_client: Callable[[], Any], warnings: list[str]) -> str | None:
    """What source_change_sensor compares, taken before reading (a change meanwhile is seen next
    time) and recorded by raw/documents, so a run from the UI or the CLI counts as processed."""
    if profile is None:
        return None
    try:
        return profile_fingerprint(profile, s3_client)
    except Exception as error:  # noqa: BLE001 - an unreachable source is reported by the import itself
        warnings.append(f"could not fingerprint the sources of {profile.slug}: {error}")
        return None
