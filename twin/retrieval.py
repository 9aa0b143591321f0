"""Retrieval, the one implementation behind `twin search`, `twin ask`, `/v1/rag`, the chat page and
the training's grounding: the query cleaned and embedded like the documents (twin/query.py),
self-query filters (twin/self_query.py), and vector, keyword (twin/keyword_search.py) or hybrid
(RRF) rankings with every filter inside SQL, plus an optional cross-encoder rerank.

Every result carries one score: `similarity`, the cosine similarity of the chunk to the question
(1 = same direction). The ranking that ordered it (RRF, a reranker) orders; it is not shown.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Literal

import psycopg

from twin.errors import TwinError
from twin.keyword_search import keyword_ranking
from twin.query import QueryFilters, Where, clean_query, iso_or_none, where_clause
from twin.raw_store import list_twins
from twin.self_query import self_query_for

if TYPE_CHECKING:
    import numpy as np

    from twin.embedding import Embedder, QueryEncoder

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("vector", "keyword", "hybrid")

RRF_K = 60  # the constant of Cormack et al.; damps the weight of the very first ranks
MIN_CANDIDATES = 20  # each leg's list length is max(4 k, this)
# measured in bench/retrieval.py (docs/benchmarks.md, Retrieval (b)): at 1M chunks ef_search 100
# gives recall@10 0.948-0.9525 against exact search, 150 gives 0.9625 at a p50 of 5.5 ms
HNSW_EF_SEARCH = 150
# A chunk at least this similar to the question may be answered from; when none is, the twin has
# nothing on the question. Set from the labelled set (docs/benchmarks.md, Retrieval (c)): with
# all-MiniLM-L6-v2 the best chunk of on-topic questions scores 0.198-0.8 and of off-topic ones
# 0.19-0.36, so no value separates them; 0.25 answers 46 of 48 on-topic questions and refuses 5-6
# of 8 off-topic ones. The same number is dbt's var('relevance_threshold').
RELEVANCE_THRESHOLD = 0.25


@dataclass(frozen=True)
class RetrievedChunk:
    chunk_id: str
    url: str
    title: str
    author: str
    category: str
    published_at: date | None
    text: str
    similarity: float  # cosine similarity to the question

    def as_json(self) -> dict[str, object]:
        row = asdict(self)
        row["published_at"] = iso_or_none(self.published_at)
        return row


@dataclass(frozen=True)
class SearchResult:
    chunks: list[RetrievedChunk]
    filters: QueryFilters
    mode: Mode
    queries: list[str]  # the cleaned question and its expansions
    notes: tuple[str, ...] = ()

    @property
    def relevant(self) -> list[RetrievedChunk]:
        """The chunks similar enough to the question to answer from (RELEVANCE_THRESHOLD)."""
        return [chunk for chunk in self.chunks if chunk.similarity >= RELEVANCE_THRESHOLD]


def encode_queries(embedder: Embedder | QueryEncoder, texts: Sequence[str]) -> np.ndarray:
    """Unit vectors of `texts` cleaned like the documents (one batch); what search, `twin embed`
    and `/v1/embeddings` all use."""
    cleaned = [clean_query(text) for text in texts]
    if not all(cleaned):
        raise TwinError("The text is empty once cleaned (only spaces, punctuation, markup or emoji).",
                        'pass some words, e.g. twin embed "postgres bloat".')
    return embedder.encode(cleaned)



# --- rankings ------------------------------------------------------------------------------------

def vector_ranking(conn: psycopg.Connection, vector: np.ndarray, where: Where, limit: int,
                   ef_search: int = HNSW_EF_SEARCH) -> list[str]:
    """Chunk ids by cosine distance (HNSW), nearest first; filtered scans still return `limit`."""
    # one round trip (a pipeline): BEGIN, the scan's settings (iterative scans: pgvector >= 0.8), the query, COMMIT
    with conn.pipeline(), conn.transaction():
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), int(limit))}")
        cursor = conn.execute(
            f"""SELECT chunk_id::text, embedding <=> %(vector)s AS distance FROM chunks WHERE {where.sql}
                ORDER BY embedding <=> %(vector)s LIMIT %(limit)s""",
            {**where.params, "vector": vector, "limit": limit})
    rows = cursor.fetchall()
    rows.sort(key=lambda row: (row[1], row[0]))  # relaxed order: re-sort
    return [row[0] for row in rows]



def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """score(d) = sum over rankings of 1 / (k + rank of d), ranks from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def fused_order(rankings: Sequence[Sequence[str]]) -> list[str]:
    """Chunk ids by reciprocal rank fusion, ties by id (as sql/analyst/hybrid_search.sql orders)."""
    fused = reciprocal_rank_fusion(rankings)
    return sorted(fused, key=lambda chunk_id: (-round(fused[chunk_id], 12), chunk_id))


# --- the one entry point ---------------------------------------------------------------------------

def search(
    conn: psycopg.Connection,
    embedder: Embedder | QueryEncoder,
    question: str,
    *,
    k: int = 5,
    mode: Mode = "hybrid",
    filters: QueryFilters | None = None,
    self_query: bool = True,
    expansions: Sequence[str] = (),
    candidates: int | None = None,
    reranker: str | None = None,
    today: date | None = None,
) -> SearchResult:
    """The best `k` chunks for `question` (more when `candidates` asks, for context packing).

    `filters` given by the caller win over the ones self-query finds in the question; scope is
    always kept. Each of the question and its `expansions` is ranked; the lists are fused by RRF.
    """
    if mode not in MODES:
        raise TwinError(f"Unknown search mode {mode!r}.", f"pick one of {', '.join(MODES)}.")
    if not 1 <= k <= 100:
        raise TwinError(f"k must be between 1 and 100 (got {k}).", "pass -k 5, for example.")
    cleaned = clean_query(question)
    if not cleaned:
        raise TwinError("The question is empty once cleaned (only spaces, punctuation, markup or emoji).",
                        'ask with some words in it, e.g. twin search "postgres table bloat".')
    filters = filters or QueryFilters()
    notes: tuple[str, ...] = ()
    if self_query:
        found = self_query_for(tuple(list_twins(conn))).parse(cleaned, today)
        notes = found.notes
        filters = replace(found.filters, twin=filters.twin or found.filters.twin,
                          category=filters.category or found.filters.category,
                          published_from=filters.published_from or found.filters.published_from,
                          published_until=filters.published_until or found.filters.published_until,
                          scope=filters.scope)
    queries = [cleaned, *(text for text in (clean_query(e) for e in expansions) if text and text != cleaned)]
    vectors = embedder.encode(queries)
    limit = max(candidates or 0, 4 * k, MIN_CANDIDATES)
    top = rank(conn, embedder.model_id, queries, vectors, filters, mode, limit)[:limit if candidates else k]
    chunks = fetch_chunks(conn, top, vectors[0])
    if reranker:
        chunks = rerank(reranker, cleaned, chunks)
    return SearchResult(chunks if candidates else chunks[:k], filters, mode, queries, notes)


def rank(conn: psycopg.Connection, model_id: str, texts: Sequence[str], vectors: Sequence[np.ndarray],
         filters: QueryFilters, mode: Mode, limit: int) -> list[str]:
    """Chunk ids, best first: each cleaned text's vector and/or keyword list (`limit` long), fused."""
    where = where_clause(filters, model_id)
    rankings: list[list[str]] = []
    for text, vector in zip(texts, vectors, strict=True):
        if mode in ("vector", "hybrid"):
            rankings.append(vector_ranking(conn, vector, where, limit))
        if mode in ("keyword", "hybrid"):
            rankings.append(keyword_ranking(conn, text, where, limit))
    return fused_order(rankings)


def fetch_chunks(conn: psycopg.Connection, ids: list[str], vector: np.ndarray) -> list[RetrievedChunk]:
    """The chunks `ids`, in that order, with their cosine similarity to the question."""
    if not ids:
        return []
    rows = conn.execute(
        """SELECT chunk_id::text, url, title, author, category, published_at, text,
                  1 - (embedding <=> %(vector)s)
           FROM chunks WHERE chunk_id = ANY(%(ids)s::uuid[])""",
        {"ids": ids, "vector": vector}).fetchall()
    by_id = {row[0]: RetrievedChunk(*row[:7], round(float(row[7]), 4)) for row in rows}
    return [by_id[chunk_id] for chunk_id in ids if chunk_id in by_id]


@functools.cache
def load_reranker(model: str):  # -> sentence_transformers.CrossEncoder
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(model, device="cpu")
    except Exception as error:  # missing files, no network for a hub id
        raise TwinError(f"The reranker model {model!r} could not be loaded: {error}",
                        "set TWIN_RERANKER_MODEL to a local cross-encoder folder, or unset it.") from error


def rerank(model: str, question: str, chunks: list[RetrievedChunk]) -> list[RetrievedChunk]:
    """Re-order candidates by a cross-encoder's relevance (only when one is configured); each
    keeps its similarity, the one score shown."""
    if not chunks:
        return chunks
    scores = load_reranker(model).predict([(question, chunk.text) for chunk in chunks])
    order = sorted(range(len(chunks)), key=lambda i: float(scores[i]), reverse=True)
    return [chunks[i] for i in order]



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
    return "nothing matched the question and its filters"

