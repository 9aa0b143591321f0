"""The embedding step: vectors for one twin's chunks, written in resumable batches, and its check."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np
import psycopg

from twin.checks import Check, CheckSpec
from twin.embedding import Embedder
from twin.embedding_column import embedding_column_dimension
from twin.errors import TwinError
from twin.features.pending import TWIN_UNEMBEDDED
from twin.features.step import StepCounts, count_rows

EMBED_WRITE_BATCH = 256  # chunks per encode-and-commit round


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
        f"""SELECT chunk_id, text, embedding_model IS NOT NULL FROM chunks WHERE {TWIN_UNEMBEDDED}
            ORDER BY length(text), chunk_id""",  # similar lengths per batch: little padding
        {"twin": twin, "model": embedder.model_id},
    ).fetchall()
    total = count_rows(conn, "SELECT count(*) FROM chunks WHERE twin = %s", twin)
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


def count_vectors(conn: psycopg.Connection, twin: str) -> int:
    """The twin's chunks that have a vector (from any model)."""
    return count_rows(conn, "SELECT count(*) FROM chunks WHERE twin = %s AND embedding IS NOT NULL", twin)


EMBEDDING_DIMENSION_MATCHES = CheckSpec(
    "embedding_dimension_matches",
    "The model's vectors have the dimension of chunks.embedding, and every chunk has a vector from the configured model.")


def check_embeddings_match(conn: psycopg.Connection, twin: str, embedder: Embedder) -> Check:
    """The embeddings' blocking check: the model's dimension is the column's, every chunk has its vector."""
    column = embedding_column_dimension(conn)
    wrong_dims, missing, other_model = conn.execute(
        """SELECT count(*) FILTER (WHERE embedding IS NOT NULL AND vector_dims(embedding) <> %s),
                  count(*) FILTER (WHERE embedding IS NULL),
                  count(*) FILTER (WHERE embedding_model IS DISTINCT FROM %s)
           FROM chunks WHERE twin = %s""",
        (column, embedder.model_id, twin),
    ).fetchone()
    passed = embedder.dimension == column and wrong_dims == 0 and missing == 0 and other_model == 0
    return EMBEDDING_DIMENSION_MATCHES.result(passed, {
        "model_dimension": embedder.dimension, "column_dimension": column, "wrong_dimension": wrong_dims,
        "not_embedded": missing, "other_model": other_model})
