"""Semantic search over chunks: the query is cleaned and embedded like the documents were."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import psycopg

from twin.cleaning import clean_prose
from twin.embedding import Embedder
from twin.errors import TwinError


@dataclass(frozen=True)
class SearchHit:
    url: str
    title: str
    author: str
    category: str
    published_at: date | None
    score: float
    text: str

    def as_json(self) -> dict[str, object]:
        row = asdict(self)
        row["published_at"] = self.published_at.isoformat() if self.published_at else None
        return row


def search_chunks(
    conn: psycopg.Connection,
    embedder: Embedder,
    query: str,
    *,
    twin: str | None = None,
    category: str | None = None,
    k: int = 5,
) -> list[SearchHit]:
    """The `k` chunks nearest to `query` by cosine similarity (HNSW), optionally filtered."""
    cleaned = clean_prose(query)
    if not cleaned:
        raise TwinError("The search query is empty.", 'pass some words, e.g. twin search "postgres bloat".')
    if k < 1:
        raise TwinError(f"-k must be at least 1 (got {k}).", "pass -k 5, for example.")
    vector = embedder.encode([cleaned])[0]
    filters, params = ["embedding IS NOT NULL", "embedding_model = %(model)s"], {"model": embedder.model_id}
    if twin is not None:
        filters.append("twin = %(twin)s")
        params["twin"] = twin
    if category is not None:
        filters.append("category = %(category)s")
        params["category"] = category
    with conn.transaction():
        # iterative scans keep filtered HNSW queries returning k rows (pgvector >= 0.8)
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute("SET LOCAL hnsw.ef_search = 100")
        rows = conn.execute(
            f"""SELECT url, title, author, category, published_at,
                       1 - (embedding <=> %(query)s) AS score, text
                FROM chunks WHERE {' AND '.join(filters)}
                ORDER BY embedding <=> %(query)s LIMIT %(k)s""",
            {**params, "query": vector, "k": k},
        ).fetchall()
    hits = [SearchHit(*row[:5], round(float(row[5]), 4), row[6]) for row in rows]
    return sorted(hits, key=lambda hit: hit.score, reverse=True)  # relaxed order: re-sort


def no_results_reason(conn: psycopg.Connection, model_id: str, twin: str | None = None) -> str:
    """Why a search found nothing: no vectors yet, or vectors from another embedding model."""
    rows = conn.execute(
        """SELECT embedding_model, count(*) FROM chunks
           WHERE embedding IS NOT NULL AND twin = coalesce(%s, twin) GROUP BY 1 ORDER BY 2 DESC""",
        (twin,)).fetchall()
    models = {str(model): int(count) for model, count in rows}
    if not models:
        return "no embedded chunks yet (run `twin materialize`)"
    if model_id not in models:
        stored = ", ".join(f"{model} ({count} chunks)" for model, count in models.items())
        return (f"the stored vectors were made by {stored}, not by {model_id} (TWIN_EMBEDDING_MODEL): "
                "set TWIN_EMBEDDING_MODEL back to that model, or re-embed with `twin materialize`")
    return "nothing matched the question"
