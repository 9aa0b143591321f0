"""Writing raw documents: one import = one transaction with per-document outcomes recorded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

from twin.documents import RawDocument
from twin.settings import Settings
from twin.urls import is_web_url, registrable_domain, url_problem


@dataclass(frozen=True)
class Rejection:
    """An input line that was refused, with the reason and the line itself."""

    line_number: int
    reason: str
    line: str


KEPT_ITEM_CHARS = 20_000  # a rejected item (a JSONL line, a url, a CSV row) is kept up to this for inspection


def rejection(line_number: int, reason: str, item: str) -> Rejection:
    """A rejection as stored: the item cut at KEPT_ITEM_CHARS, NUL bytes written as \\x00 (text columns)."""
    item = item.rstrip("\n")
    kept = item if len(item) <= KEPT_ITEM_CHARS else item[:KEPT_ITEM_CHARS] + " …[truncated]"
    return Rejection(line_number, reason.replace("\x00", "\\x00"), kept.replace("\x00", "\\x00"))


def size_problem(content: str, max_bytes: int) -> str | None:
    """Why a document is too large to store, or None (the one size rule every source applies)."""
    size = len(content.encode("utf-8"))
    if size <= max_bytes:
        return None
    return (f"content is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit; "
            "split the document or raise TWIN_MAX_DOCUMENT_BYTES")


@dataclass
class ImportSummary:
    """What one import did: accepted (new), updated, unchanged, deleted and rejected."""

    source: str
    import_id: int = 0
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    twins: set[str] = field(default_factory=set)
    prune_skipped: bool = False

    @property
    def changed_twins(self) -> set[str]:
        return self.twins if (self.accepted or self.updated or self.deleted) else set()


_STAGING_COLUMNS = (
    "twin", "author", "category", "platform", "url", "title", "content", "published_at", "content_hash"
)


def store_documents(
    conn: psycopg.Connection,
    source: str,
    documents: list[RawDocument],
    rejections: list[Rejection],
    *,
    prune: bool = False,
    only_twin: str | None = None,
    max_document_bytes: int | None = None,
) -> ImportSummary:
    """Upsert `documents` by (twin, url), record rejections, and optionally prune the source.

    The rules every source shares are checked here: a document URL (`twin/urls.py`), content within
    TWIN_MAX_DOCUMENT_BYTES, and no document taken over from another source (a different
    source delivering a stored URL with other content is a rejection, not an overwrite).
    Replaced and deleted versions are kept in raw_document_history (a trigger).
    Pruning deletes this source's documents (of `only_twin`, when given) that are no longer in
    it, and is skipped when any line was rejected (it may be a document we would otherwise lose).
    """
    limit = max_document_bytes if max_document_bytes is not None else Settings.from_env().max_document_bytes
    # documents refused here get line numbers after every item of the source (they must be unique)
    numbered_from = max((rejection.line_number for rejection in rejections), default=0) + len(documents)
    documents, refused = _apply_source_rules(documents, limit, numbered_from)
    documents, conflicts = _without_conflicts(conn, source, documents, numbered_from + len(refused))
    rejections = [*rejections, *refused, *conflicts]
    summary = ImportSummary(source=source, rejected=list(rejections))
    summary.twins = {doc.twin for doc in documents}
    with conn.transaction():
        import_id = conn.execute(
            "INSERT INTO imports (source) VALUES (%s) RETURNING id", (source,)
        ).fetchone()[0]
        summary.import_id = import_id
        conn.execute(
            """CREATE TEMP TABLE raw_staging (
                   twin text, author text, category text, platform text, url text, title text,
                   content text, published_at date, content_hash text) ON COMMIT DROP"""
        )
        with conn.cursor().copy(f"COPY raw_staging ({', '.join(_STAGING_COLUMNS)}) FROM STDIN") as copy:
            for doc in documents:
                copy.write_row(
                    (doc.twin, doc.author, doc.category.value, doc.platform, doc.url, doc.title,
                     doc.content, doc.published_at, doc.content_hash)
                )
        names: dict[str, str] = {}
        for doc in sorted(documents, key=lambda doc: doc.author):  # a twin is named by its first author
            names.setdefault(doc.twin, doc.author)
        add_twins(conn, names)
        summary.accepted, summary.updated, summary.unchanged = conn.execute(
            """SELECT count(*) FILTER (WHERE r.id IS NULL),
                      count(*) FILTER (WHERE r.id IS NOT NULL AND r.content_hash <> s.content_hash),
                      count(*) FILTER (WHERE r.content_hash = s.content_hash)
               FROM raw_staging s LEFT JOIN raw_documents r ON r.twin = s.twin AND r.url = s.url"""
        ).fetchone()
        conn.execute(
            """INSERT INTO raw_documents
                   (twin, author, category, platform, url, title, content, published_at,
                    content_hash, source)
               SELECT twin, author, category, platform, url, title, content, published_at,
                      content_hash, %s FROM raw_staging
               ON CONFLICT (twin, url) DO UPDATE SET
                   author = EXCLUDED.author, category = EXCLUDED.category,
                   platform = EXCLUDED.platform, title = EXCLUDED.title,
                   content = EXCLUDED.content, published_at = EXCLUDED.published_at,
                   content_hash = EXCLUDED.content_hash, source = EXCLUDED.source,
                   updated_at = now()
               WHERE raw_documents.content_hash <> EXCLUDED.content_hash""",
            (source,),
        )
        if prune and len(rejections) > len(conflicts):  # a conflict is another source's document
            summary.prune_skipped = True
        elif prune:
            deleted = conn.execute(
                """DELETE FROM raw_documents r
                   WHERE r.source = %(source)s AND r.twin = coalesce(%(twin)s, r.twin)
                   AND NOT EXISTS (SELECT 1 FROM raw_staging s WHERE s.twin = r.twin AND s.url = r.url)
                   RETURNING twin""",
                {"source": source, "twin": only_twin},
            ).fetchall()
            summary.deleted = len(deleted)
            summary.twins |= {row[0] for row in deleted}
        with conn.cursor().copy(
            "COPY import_rejections (import_id, line_number, reason, line) FROM STDIN"
        ) as copy:
            for rejection in rejections:
                copy.write_row((import_id, rejection.line_number, rejection.reason, rejection.line))
        conn.execute(
            """UPDATE imports SET finished_at = now(), accepted = %s, updated = %s, unchanged = %s,
                   rejected = %s, deleted = %s WHERE id = %s""",
            (summary.accepted, summary.updated, summary.unchanged, len(rejections),
             summary.deleted, import_id),
        )
    return summary


def _apply_source_rules(documents: list[RawDocument], max_bytes: int,
                        numbered_from: int) -> tuple[list[RawDocument], list[Rejection]]:
    kept: list[RawDocument] = []
    refused: list[Rejection] = []
    for doc in documents:
        problem = url_problem(doc.url) or size_problem(doc.content, max_bytes)
        if problem is None:
            kept.append(doc)
        else:
            refused.append(rejection(numbered_from + len(refused) + 1, problem, doc.url))
    return kept, refused


def _without_conflicts(conn: psycopg.Connection, source: str, documents: list[RawDocument],
                       numbered_from: int) -> tuple[list[RawDocument], list[Rejection]]:
    """Documents whose (twin, url) another source stored with other content become rejections."""
    if not documents:
        return documents, []
    rows = conn.execute(
        """SELECT r.twin, r.url, r.source FROM raw_documents r
           JOIN unnest(%s::text[], %s::text[], %s::text[]) AS d(twin, url, content_hash)
             ON r.twin = d.twin AND r.url = d.url
           WHERE r.source <> %s AND r.content_hash <> d.content_hash""",
        ([d.twin for d in documents], [d.url for d in documents], [d.content_hash for d in documents],
         source),
    ).fetchall()
    owners = {(twin, url): owner for twin, url, owner in rows if not _same_origin(owner, source)}
    kept = [doc for doc in documents if (doc.twin, doc.url) not in owners]
    conflicts = [
        rejection(numbered_from + position, f"conflict: {doc.url} is already stored from another source "
                  f"({owners[(doc.twin, doc.url)]}) with other content; it was not replaced. If this source "
                  "should own it, remove it from the other source first (a prune then deletes it, "
                  "keeping it in raw_document_history)", doc.url)
        for position, doc in enumerate((d for d in documents if (d.twin, d.url) in owners), start=1)]
    return kept, conflicts


def _same_origin(stored: str, arriving: str) -> bool:
    """Two crawls of one site (from its feed, then its archive page) are one source."""
    if stored == arriving:
        return True
    return is_web_url(stored) and is_web_url(arriving) and registrable_domain(stored) == registrable_domain(arriving)


def delete_document(conn: psycopg.Connection, twin: str, url: str) -> bool:
    """Remove one raw document; downstream layers drop it at their next materialization."""
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM raw_documents WHERE twin = %s AND url = %s RETURNING id", (twin, url)
        ).fetchone()
    return row is not None


def add_twins(conn: psycopg.Connection, names: Mapping[str, str]) -> None:
    """Record twins by slug -> name; a twin that exists keeps its name. The one writer of `twins`."""
    if names:
        conn.cursor().executemany("INSERT INTO twins (slug, name) VALUES (%s, %s) ON CONFLICT (slug) DO NOTHING",
                                  sorted(names.items()))


def list_twins(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(slug, name) of every twin, ordered by slug. The one reader of `twins`."""
    return [(row[0], row[1]) for row in conn.execute("SELECT slug, name FROM twins ORDER BY slug")]
