"""The feature pipeline for one twin: raw -> cleaned -> chunks -> embeddings, incrementally.

Each step compares content hashes with what it wrote last time and touches only what changed;
each returns counts for the run's metadata. Every write is a transaction, so a run that dies
midway leaves the tables as they were (or, for embeddings, with the finished batches kept).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from twin.chunking import ChunkingPolicy, chunk_document
from twin.cleaning import CLEANER_VERSION, SAMPLE_LINES, clean, clean_title, detector_lines, repeated_lines
from twin.database import hold_platform_lock
from twin.documents import Category, content_hash
from twin.embedding import Embedder
from twin.embedding_column import embedding_column_dimension
from twin.errors import TwinError
from twin.keyword_search import refresh_chunk_terms

_CHUNK_NAMESPACE = uuid.UUID("5b0f3c9e-6f7a-4d8e-9a51-2c7d1e0b4a10")
EMBED_WRITE_BATCH = 256  # chunks per encode-and-commit round


@dataclass
class StepCounts:
    """Per-document (or per-chunk, for embeddings) outcome counts of one step."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    details: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # short lines for the run's metadata

    def as_metadata(self) -> dict[str, int]:
        return {"new": self.new, "changed": self.changed, "unchanged": self.unchanged,
                "deleted": self.deleted, "skipped": self.skipped, **self.details}


def clean_documents(conn: psycopg.Connection, twin: str) -> StepCounts:
    """Bring cleaned_documents in line with raw_documents for `twin` and the cleaning rules.

    A document is cleaned again when its raw content, the cleaner version or the repeated lines
    found on its site changed; its cleaned hash (and so its chunks and vectors) changes only when
    its cleaned text does. `details` counts removed chrome lines by family; `notes` holds the most
    common removed lines and the documents refused for being only chrome.
    """
    counts = StepCounts()
    with conn.transaction():
        _lock_twin_step(conn, "clean", twin)
        deleted = conn.execute(
            """DELETE FROM cleaned_documents c WHERE c.twin = %s
               AND NOT EXISTS (SELECT 1 FROM raw_documents r WHERE r.id = c.document_id)
               RETURNING document_id""",
            (twin,),
        ).fetchall()
        counts.deleted = len(deleted)
        total = _count(conn, "SELECT count(*) FROM raw_documents WHERE twin = %s", twin)
        if not counts.deleted and not _count(conn, _RAW_PENDING_SQL, {"twin": twin, "version": CLEANER_VERSION}):
            counts.unchanged = total  # nothing the cleaning depends on changed, so neither can its repeated lines
            return counts
        rows = conn.execute(
            """SELECT r.id, r.category, r.platform, r.url, r.title, r.author, r.published_at,
                      r.content, r.content_hash, c.content_hash, c.raw_hash, c.cleaner
               FROM raw_documents r LEFT JOIN cleaned_documents c ON c.document_id = r.id
               WHERE r.twin = %s ORDER BY r.id""",
            (twin,),
        ).fetchall()
        first_pass = {row[0]: clean(Category(row[1]), row[7], title=row[4], author=row[5]) for row in rows}
        sites: dict[str, list[set[str]]] = {}
        for row in rows:
            if Category(row[1]) is not Category.REPOSITORY:
                sites.setdefault(site_of(row[3]), []).append(detector_lines(first_pass[row[0]].text))
        repeated = {site: repeated_lines(documents) for site, documents in sites.items()}
        removed: Counter[str] = Counter()
        samples: Counter[str] = Counter()
        refused: list[str] = []
        for (doc_id, category, platform, url, title, author, published_at, raw_content, raw_hash,
             previous_hash, previous_raw_hash, previous_cleaner) in rows:
            site_lines = repeated.get(site_of(url), frozenset()) if category != Category.REPOSITORY else frozenset()
            cleaner = cleaner_signature(site_lines)
            if previous_hash is not None and previous_raw_hash == raw_hash and previous_cleaner == cleaner:
                counts.unchanged += 1
                continue
            cleaned = first_pass[doc_id]
            if site_lines:
                cleaned = clean(Category(category), raw_content, title=title, author=author, repeated=site_lines)
            if not cleaned.text:
                counts.skipped += 1
                refused.append(f"refused {url}: content {cleaned.reason_empty()}")
                conn.execute("DELETE FROM cleaned_documents WHERE document_id = %s", (doc_id,))
                continue
            removed.update(cleaned.removed)
            samples.update(cleaned.samples)
            text = cleaned.text
            title = clean_title(title) or _title_from(text, url)
            new_hash = content_hash(category, platform, url, title, author, published_at, text)
            record = Jsonb({"lines": dict(sorted(cleaned.removed.items())), "samples": cleaned.samples})
            conn.execute(
                """INSERT INTO cleaned_documents
                       (document_id, twin, category, platform, url, title, author, published_at,
                        content, content_hash, raw_hash, cleaner, removed)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (document_id) DO UPDATE SET
                       category = EXCLUDED.category, platform = EXCLUDED.platform,
                       url = EXCLUDED.url, title = EXCLUDED.title, author = EXCLUDED.author,
                       published_at = EXCLUDED.published_at, content = EXCLUDED.content,
                       content_hash = EXCLUDED.content_hash, raw_hash = EXCLUDED.raw_hash,
                       cleaner = EXCLUDED.cleaner, removed = EXCLUDED.removed, cleaned_at = now()""",
                (doc_id, twin, category, platform, url, title, author, published_at, text, new_hash,
                 raw_hash, cleaner, record),
            )
            if previous_hash is None:
                counts.new += 1
            elif previous_hash != new_hash:
                counts.changed += 1
            else:
                counts.unchanged += 1
        counts.details = {f"removed_{family}_lines": count for family, count in sorted(removed.items())}
        counts.notes = [f"{count}x {line}" for line, count in samples.most_common(SAMPLE_LINES)] + refused
    return counts


# What "still to do" means for each step, over `raw_documents r LEFT JOIN cleaned_documents c`,
# `cleaned_documents c` and `chunks`; the steps, features_pending and twin/lag.py share them.
# raw documents not cleaned as they are now, or cleaned by another version of the rules:
UNCLEANED = """(c.document_id IS NULL OR c.raw_hash <> r.content_hash
                OR split_part(c.cleaner, '+', 1) <> %(version)s)"""
_RAW_PENDING_SQL = f"""SELECT count(*) FROM raw_documents r LEFT JOIN cleaned_documents c ON c.document_id = r.id
    WHERE r.twin = %(twin)s AND {UNCLEANED}"""


def cleaner_signature(repeated: frozenset[str]) -> str:
    """The cleaner version plus a fingerprint of the repeated lines its site's documents lose."""
    if not repeated:
        return CLEANER_VERSION
    return f"{CLEANER_VERSION}+{content_hash(*sorted(repeated))[:12]}"


def site_of(url: str) -> str:
    """The site a document comes from (host without `www.`): the repeated-line detector's group."""
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.") or url.split("/", 1)[0]


def cleaning_pending(conn: psycopg.Connection, twin: str) -> int:
    """Raw documents of `twin` not cleaned as they are now or by these rules, plus rows to delete."""
    return _count(conn, _RAW_PENDING_SQL, {"twin": twin, "version": CLEANER_VERSION}) + _count(
        conn,
        """SELECT count(*) FROM cleaned_documents c WHERE c.twin = %s
           AND NOT EXISTS (SELECT 1 FROM raw_documents r WHERE r.id = c.document_id)""",
        twin,
    )


def chrome_summary(conn: psycopg.Connection, twin: str) -> dict[str, int]:
    """What cleaning removed across the twin's cleaned documents: documents and chrome lines."""
    documents, with_chrome, lines = conn.execute(
        """SELECT count(*), count(*) FILTER (WHERE n.lines > 0), coalesce(sum(n.lines), 0)
           FROM cleaned_documents c
           LEFT JOIN LATERAL (SELECT sum(value::int) AS lines FROM jsonb_each_text(c.removed->'lines')) n ON true
           WHERE c.twin = %s""",
        (twin,),
    ).fetchone()
    return {"documents": documents, "documents_with_chrome": with_chrome, "chrome_lines_removed": int(lines)}


def chrome_by_family(conn: psycopg.Connection, twin: str) -> dict[str, int]:
    """Removed chrome lines of the twin's cleaned documents per family, most first."""
    rows = conn.execute(
        """SELECT key, sum(value::int) AS lines FROM cleaned_documents c, jsonb_each_text(c.removed->'lines')
           WHERE c.twin = %s GROUP BY key ORDER BY lines DESC, key""",
        (twin,),
    ).fetchall()
    return {family: int(lines) for family, lines in rows}


# cleaned documents without chunks of their current text by this chunker; chunks without a
# vector from this model:
UNCHUNKED = """NOT EXISTS (SELECT 1 FROM chunks k WHERE k.document_id = c.document_id
    AND k.document_hash = c.content_hash AND k.chunker = %(chunker)s)"""
UNEMBEDDED = "(embedding IS NULL OR embedding_model IS DISTINCT FROM %(model)s)"
_UNCHUNKED = f"c.twin = %(twin)s AND {UNCHUNKED}"
_UNEMBEDDED = f"twin = %(twin)s AND {UNEMBEDDED}"


def features_pending(conn: psycopg.Connection, twin: str, model_id: str, chunker: str) -> int:
    """Work any feature step of `twin` still has: documents to clean, cleaned documents to chunk
    (with `chunker`), chunks to embed (with `model_id`). 0 means a run would change nothing."""
    return cleaning_pending(conn, twin) + _count(
        conn,
        f"""SELECT (SELECT count(*) FROM cleaned_documents c WHERE {_UNCHUNKED})
                 + (SELECT count(*) FROM chunks WHERE {_UNEMBEDDED})""",
        {"twin": twin, "chunker": chunker, "model": model_id},
    )


def chunk_documents(
    conn: psycopg.Connection, twin: str, embedder: Embedder, policy: ChunkingPolicy
) -> StepCounts:
    """Re-chunk the cleaned documents of `twin` whose content (or chunking policy) changed.

    An edited document's old chunks are replaced in the same transaction; chunks whose text
    did not change keep their embedding, so only new text is embedded again.
    """
    counts = StepCounts(details={"chunks_written": 0, "chunks_removed": 0, "embeddings_reused": 0})
    signature = policy.signature
    with conn.transaction():
        _lock_twin_step(conn, "chunk", twin)
        pending = conn.execute(
            f"""SELECT c.document_id, c.category, c.url, c.title, c.author, c.published_at,
                      c.content, c.content_hash,
                      EXISTS (SELECT 1 FROM chunks k WHERE k.document_id = c.document_id)
               FROM cleaned_documents c WHERE {_UNCHUNKED} ORDER BY c.document_id""",
            {"twin": twin, "chunker": signature},
        ).fetchall()
        counts.unchanged = _count(
            conn, "SELECT count(*) FROM cleaned_documents WHERE twin = %s", twin
        ) - len(pending)
        if not pending:
            return counts
        doc_ids = [row[0] for row in pending]
        reusable = {
            (doc_id, text): (embedding, model)
            for doc_id, text, embedding, model in conn.execute(
                """SELECT document_id, text, embedding, embedding_model FROM chunks
                   WHERE document_id = ANY(%s) AND embedding IS NOT NULL""",
                (doc_ids,),
            )
        }
        removed = conn.execute(
            "DELETE FROM chunks WHERE document_id = ANY(%s) RETURNING 1", (doc_ids,)
        ).fetchall()
        written = reused = 0
        now = conn.execute("SELECT now()").fetchone()[0]
        with conn.cursor().copy(
            """COPY chunks (chunk_id, document_id, twin, position, text, token_count, document_hash,
                   chunker, url, title, author, category, published_at, embedding,
                   embedding_model, embedded_at) FROM STDIN WITH (FORMAT BINARY)"""
        ) as copy:
            copy.set_types(["uuid", "int8", "text", "int4", "text", "int4", "text", "text", "text",
                            "text", "text", "text", "date", "vector", "text", "timestamptz"])
            for (doc_id, category, url, title, author, published_at, content, doc_hash,
                 had_chunks) in pending:
                chunks = chunk_document(Category(category), content, title or url,
                                        embedder.count_tokens, policy)
                for chunk in chunks:
                    embedding, model = reusable.get((doc_id, chunk.text), (None, None))
                    reused += embedding is not None
                    copy.write_row((
                        chunk_id(doc_id, chunk.position, chunk.text), doc_id, twin, chunk.position,
                        chunk.text, chunk.token_count, doc_hash, signature, url, title, author,
                        category, published_at, embedding, model,
                        None if embedding is None else now,
                    ))
                written += len(chunks)
                counts.changed += had_chunks
                counts.new += not had_chunks
        counts.details = {"chunks_written": written, "chunks_removed": len(removed),
                          "embeddings_reused": reused, "terms_counted": refresh_chunk_terms(conn, twin)}
    return counts


def embed_chunks(
    conn: psycopg.Connection,
    twin: str,
    embedder: Embedder,
    on_progress: Callable[[int, int], None] | None = None,
) -> StepCounts:
    """Embed the chunks of `twin` that have no vector from `embedder`'s model yet.

    Refuses (before writing anything) when the model's dimension differs from the column's.
    Vectors are committed batch by batch, so an interrupted run resumes where it stopped.
    """
    check_embedding_dimension(conn, embedder)
    rows = conn.execute(
        f"""SELECT chunk_id, text, embedding_model IS NOT NULL FROM chunks WHERE {_UNEMBEDDED}
            ORDER BY length(text), chunk_id""",  # similar lengths per batch: little padding
        {"twin": twin, "model": embedder.model_id},
    ).fetchall()
    total = _count(conn, "SELECT count(*) FROM chunks WHERE twin = %s", twin)
    counts = StepCounts(unchanged=total - len(rows))
    counts.changed = sum(1 for row in rows if row[2])
    counts.new = len(rows) - counts.changed
    done = 0
    for start in range(0, len(rows), EMBED_WRITE_BATCH):
        batch = rows[start:start + EMBED_WRITE_BATCH]
        vectors = embedder.encode([row[1] for row in batch])
        write_embeddings(conn, [row[0] for row in batch], vectors, embedder.model_id)
        done += len(batch)
        if on_progress is not None:
            on_progress(done, len(rows))
    return counts


def check_embedding_dimension(conn: psycopg.Connection, embedder: Embedder) -> None:
    column = embedding_column_dimension(conn)
    if embedder.dimension != column:
        raise TwinError(
            f"Embedding model {embedder.model_id!r} makes {embedder.dimension}-d vectors but "
            f"chunks.embedding is vector({column}); nothing was written.",
            f"use a {column}-d model, or run `twin embedding-dim {embedder.dimension}` "
            "(drops the stored vectors) and re-materialize.",
        )


def write_embeddings(
    conn: psycopg.Connection, chunk_ids: list[uuid.UUID], vectors: np.ndarray, model_id: str
) -> None:
    """Bulk-load vectors with binary COPY into a staging table, then one UPDATE."""
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS embedding_staging (chunk_id uuid, embedding vector)"
        )
        conn.execute("TRUNCATE embedding_staging")
        with conn.cursor().copy(
            "COPY embedding_staging (chunk_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "vector"])
            for chunk, vector in zip(chunk_ids, vectors, strict=False):
                copy.write_row((chunk, vector))
        conn.execute(
            """UPDATE chunks c SET embedding = s.embedding, embedding_model = %s, embedded_at = now()
               FROM embedding_staging s WHERE c.chunk_id = s.chunk_id""",
            (model_id,),
        )


def chunk_id(document_id: int, position: int, text: str) -> uuid.UUID:
    return uuid.uuid5(_CHUNK_NAMESPACE, f"{document_id}/{position}/{content_hash(text)}")


# --- checks: each returns (passed, details) for the partition -------------------------------

def check_no_empty_chunks(conn: psycopg.Connection, twin: str) -> tuple[bool, dict[str, int]]:
    empty = _count(conn, "SELECT count(*) FROM chunks WHERE twin = %s AND (btrim(text) = '' OR token_count = 0)", twin)
    return empty == 0, {"empty_chunks": empty}


def check_unique_chunks(conn: psycopg.Connection, twin: str) -> tuple[bool, dict[str, int]]:
    duplicate_ids, duplicate_positions = conn.execute(
        """SELECT count(*) - count(DISTINCT chunk_id),
                  count(*) - count(DISTINCT (document_id, position))
           FROM chunks WHERE twin = %s""",
        (twin,),
    ).fetchone()
    return duplicate_ids == 0 and duplicate_positions == 0, {
        "duplicate_chunk_ids": duplicate_ids, "duplicate_positions": duplicate_positions}


def check_documents_have_chunks(conn: psycopg.Connection, twin: str) -> tuple[bool, dict[str, int]]:
    missing = _count(
        conn,
        """SELECT count(*) FROM cleaned_documents c WHERE c.twin = %s
           AND NOT EXISTS (SELECT 1 FROM chunks k WHERE k.document_id = c.document_id)""",
        twin,
    )
    return missing == 0, {"documents_without_chunks": missing}


def check_chunks_within_window(
    conn: psycopg.Connection, twin: str, max_tokens: int
) -> tuple[bool, dict[str, int]]:
    over = _count(conn, f"SELECT count(*) FROM chunks WHERE twin = %s AND token_count > {int(max_tokens)}", twin)
    return over == 0, {"chunks_over_window": over, "max_tokens": max_tokens}


def check_embeddings_match(
    conn: psycopg.Connection, twin: str, embedder: Embedder
) -> tuple[bool, dict[str, int]]:
    column = embedding_column_dimension(conn)
    wrong_dims, missing, other_model = conn.execute(
        """SELECT count(*) FILTER (WHERE embedding IS NOT NULL AND vector_dims(embedding) <> %s),
                  count(*) FILTER (WHERE embedding IS NULL),
                  count(*) FILTER (WHERE embedding_model IS DISTINCT FROM %s)
           FROM chunks WHERE twin = %s""",
        (column, embedder.model_id, twin),
    ).fetchone()
    passed = embedder.dimension == column and wrong_dims == 0 and missing == 0 and other_model == 0
    return passed, {"model_dimension": embedder.dimension, "column_dimension": column,
                    "wrong_dimension": wrong_dims, "not_embedded": missing,
                    "other_model": other_model}


def _lock_twin_step(conn: psycopg.Connection, step: str, twin: str) -> None:
    """Serialize concurrent runs of one step for one twin (UI and CLI at once, say)."""
    hold_platform_lock(conn, f"{step}:{twin}")


def _count(conn: psycopg.Connection, sql: str, params: object) -> int:
    args = params if isinstance(params, dict) else (params,)
    return int(conn.execute(sql, args).fetchone()[0])


def _title_from(text: str, url: str) -> str:
    first_line = text.strip().split("\n", 1)[0].lstrip("# ").strip()
    return first_line[:120] or url
