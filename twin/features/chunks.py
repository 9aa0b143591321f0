"""The chunking step: cleaned_documents -> chunks for one twin, and the chunk table's checks."""

from __future__ import annotations

import uuid

import psycopg

from twin.checks import Check, CheckSpec
from twin.chunking import ChunkingPolicy, chunk_document
from twin.documents import Category, content_hash
from twin.embedding import Embedder
from twin.features.pending import TWIN_UNCHUNKED
from twin.features.step import StepCounts, count_rows, lock_twin_step
from twin.keyword_search import refresh_chunk_terms

_CHUNK_NAMESPACE = uuid.UUID("5b0f3c9e-6f7a-4d8e-9a51-2c7d1e0b4a10")


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
        lock_twin_step(conn, "chunk", twin)
        pending = conn.execute(
            f"""SELECT c.document_id, c.category, c.url, c.title, c.author, c.published_at,
                      c.content, c.content_hash,
                      EXISTS (SELECT 1 FROM chunks k WHERE k.document_id = c.document_id)
               FROM cleaned_documents c WHERE {TWIN_UNCHUNKED} ORDER BY c.document_id""",
            {"twin": twin, "chunker": signature},
        ).fetchall()
        counts.unchanged = count_rows(
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


def chunk_id(document_id: int, position: int, text: str) -> uuid.UUID:
    return uuid.uuid5(_CHUNK_NAMESPACE, f"{document_id}/{position}/{content_hash(text)}")


# --- checks: blocking checks of features/chunks, evaluated for one partition ----------------

NO_EMPTY_CHUNKS = CheckSpec("no_empty_chunks", "No chunk of the twin is blank or has zero tokens.")
UNIQUE_CHUNK_IDS = CheckSpec("unique_chunk_ids", "Chunk ids, and (document, position) pairs, are unique.")
DOCUMENTS_HAVE_CHUNKS = CheckSpec("documents_have_chunks", "Every cleaned document with text has at least one chunk.")
CHUNKS_FIT_MODEL_WINDOW = CheckSpec(
    "chunks_fit_model_window", "No chunk is longer than the embedding model's window (it would be truncated).")
CHUNK_CHECKS = (NO_EMPTY_CHUNKS, UNIQUE_CHUNK_IDS, DOCUMENTS_HAVE_CHUNKS, CHUNKS_FIT_MODEL_WINDOW)


def check_chunks(conn: psycopg.Connection, twin: str, max_tokens: int) -> list[Check]:
    """Every check of CHUNK_CHECKS, in that order."""
    return [check_no_empty_chunks(conn, twin), check_unique_chunks(conn, twin),
            check_documents_have_chunks(conn, twin), check_chunks_within_window(conn, twin, max_tokens)]


def check_no_empty_chunks(conn: psycopg.Connection, twin: str) -> Check:
    empty = count_rows(conn, "SELECT count(*) FROM chunks WHERE twin = %s AND (btrim(text) = '' OR token_count = 0)", twin)
    return NO_EMPTY_CHUNKS.result(empty == 0, {"empty_chunks": empty})


def check_unique_chunks(conn: psycopg.Connection, twin: str) -> Check:
    duplicate_ids, duplicate_positions = conn.execute(
        """SELECT count(*) - count(DISTINCT chunk_id),
                  count(*) - count(DISTINCT (document_id, position))
           FROM chunks WHERE twin = %s""",
        (twin,),
    ).fetchone()
    return UNIQUE_CHUNK_IDS.result(duplicate_ids == 0 and duplicate_positions == 0, {
        "duplicate_chunk_ids": duplicate_ids, "duplicate_positions": duplicate_positions})


def check_documents_have_chunks(conn: psycopg.Connection, twin: str) -> Check:
    missing = count_rows(
        conn,
        """SELECT count(*) FROM cleaned_documents c WHERE c.twin = %s
           AND NOT EXISTS (SELECT 1 FROM chunks k WHERE k.document_id = c.document_id)""",
        twin,
    )
    return DOCUMENTS_HAVE_CHUNKS.result(missing == 0, {"documents_without_chunks": missing})


def check_chunks_within_window(conn: psycopg.Connection, twin: str, max_tokens: int) -> Check:
    over = count_rows(conn, f"SELECT count(*) FROM chunks WHERE twin = %s AND token_count > {int(max_tokens)}", twin)
    return CHUNKS_FIT_MODEL_WINDOW.result(over == 0, {"chunks_over_window": over, "max_tokens": max_tokens})
