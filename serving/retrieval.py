"""Retrieval for the RAG service: self-query filters, hybrid search (pgvector HNSW cosine +
Postgres full-text, fused with reciprocal rank fusion), optional query expansion and cross-encoder
rerank, and packing the context to a token budget.

The query is cleaned and embedded by the same `clean_prose` and model as the feature pipeline.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import psycopg

from twin.cleaning import clean_prose
from twin.embedding import Embedder
from twin.errors import TwinError

RRF_K = 60  # the constant of Cormack et al.; damps the weight of the very first ranks
CATEGORY_WORDS = {
    "article": ("article", "articles", "essay", "essays", "blog post", "blog posts"),
    "post": ("post", "posts", "update", "updates"),
    "repository": ("repository", "repositories", "repo", "repos", "code", "source code"),
}


@dataclass(frozen=True)
class QueryFilters:
    twin: str | None = None
    category: str | None = None
    scope: frozenset[str] | None = None  # the twins the caller's key may read (None: every twin)


@dataclass(frozen=True)
class RetrievedChunk:
    chunk_id: str
    url: str
    title: str
    author: str
    category: str
    published_at: date | None
    text: str
    similarity: float  # cosine similarity to the query (1 = same direction)
    score: float  # fused reciprocal-rank score (or the reranker's score when one is configured)


class SelfQuery:
    """Finds author and category filters in a question with a spaCy entity ruler built from the
    twins table (names, slugs, unique first and last names) and the category words."""

    def __init__(self, twins: Sequence[tuple[str, str]]) -> None:
        import spacy

        self.twins = tuple(twins)
        self._nlp = spacy.blank("en")
        ruler = self._nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
        patterns: list[dict[str, str]] = []
        for slug, phrases in _author_phrases(self.twins).items():
            patterns += [{"label": "AUTHOR", "pattern": phrase, "id": slug} for phrase in phrases]
        for category, words in CATEGORY_WORDS.items():
            patterns += [{"label": "CATEGORY", "pattern": word, "id": category} for word in words]
        ruler.add_patterns(patterns)  # type: ignore[attr-defined]

    def filters(self, question: str) -> QueryFilters:
        twin = category = None
        for entity in self._nlp(_fold(question)).ents:
            if entity.label_ == "AUTHOR" and twin is None:
                twin = entity.ent_id_
            elif entity.label_ == "CATEGORY" and category is None:
                category = entity.ent_id_
        return QueryFilters(twin=twin, category=category)


@functools.lru_cache(maxsize=8)
def self_query_for(twins: tuple[tuple[str, str], ...]) -> SelfQuery:
    """One ruler per set of twins (rebuilt when the twins table changes)."""
    return SelfQuery(twins)


def _author_phrases(twins: Sequence[tuple[str, str]]) -> dict[str, set[str]]:
    phrases: dict[str, set[str]] = {slug: {_fold(name).lower(), slug.replace("-", " "), slug} for slug, name in twins}
    for position in (0, -1):  # first and last names, when only one twin has them
        owners: dict[str, set[str]] = {}
        for slug, name in twins:
            parts = _fold(name).lower().split()
            if len(parts) > 1:
                owners.setdefault(parts[position], set()).add(slug)
        for part, slugs in owners.items():
            if len(slugs) == 1 and len(part) > 2:
                phrases[next(iter(slugs))].add(part)
    return phrases


def _fold(text: str) -> str:
    """Accents off ("Tomás" -> "Tomas") so a question typed without them still matches."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def hybrid_search(
    conn: psycopg.Connection,
    embedder: Embedder,
    queries: Sequence[str],
    filters: QueryFilters,
    *,
    k: int,
    candidates: int | None = None,
) -> list[RetrievedChunk]:
    """The best chunks for one question (and its expansions): each query is cleaned and embedded
    like the documents were, then ranked by `hybrid_search_vectors`."""
    if k < 1:
        raise TwinError(f"k must be at least 1 (got {k}).", "pass k between 1 and 20.")
    cleaned = [text for text in (clean_prose(query) for query in queries) if text]
    if not cleaned:
        raise TwinError("The question is empty once cleaned.", "ask a question with some words in it.")
    vectors = embedder.encode(cleaned)
    return hybrid_search_vectors(conn, embedder.model_id, cleaned, list(vectors), filters,
                                 limit=candidates or max(4 * k, 20))


def hybrid_search_vectors(
    conn: psycopg.Connection,
    model_id: str,
    texts: Sequence[str],
    vectors: Sequence[np.ndarray],
    filters: QueryFilters,
    *,
    limit: int,
) -> list[RetrievedChunk]:
    """Reciprocal rank fusion of a vector ranking (HNSW cosine) and a full-text ranking per
    query; filters are applied inside SQL; up to `limit` chunks, best first."""
    where, params = ["embedding IS NOT NULL", "embedding_model = %(model)s"], {"model": model_id}
    if filters.twin is not None:
        where.append("twin = %(twin)s")
        params["twin"] = filters.twin
    if filters.scope is not None:  # a scoped API key reads its own twins only, whatever else matched
        where.append("twin = ANY(%(scope)s)")
        params["scope"] = sorted(filters.scope)
    if filters.category is not None:
        where.append("category = %(category)s")
        params["category"] = filters.category
    condition = " AND ".join(where)
    rankings: list[list[str]] = []
    with conn.transaction():
        # iterative scans keep filtered HNSW queries returning `limit` rows (pgvector >= 0.8)
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute(f"SET LOCAL hnsw.ef_search = {max(100, int(limit))}")
        for text, vector in zip(texts, vectors, strict=True):
            rows = conn.execute(
                f"""SELECT chunk_id::text, embedding <=> %(vector)s AS distance FROM chunks WHERE {condition}
                    ORDER BY embedding <=> %(vector)s LIMIT %(limit)s""",
                {**params, "vector": vector, "limit": limit}).fetchall()
            rows.sort(key=lambda row: row[1])  # relaxed order: re-sort
            rankings.append([row[0] for row in rows])
            # any of the words, not all of them: a question rarely shares every word with the answer
            rows = conn.execute(
                f"""WITH q AS (SELECT to_tsquery('english', replace(
                        plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')) AS query)
                    SELECT chunk_id::text FROM chunks, q WHERE {condition} AND search_vector @@ q.query
                    ORDER BY ts_rank_cd(search_vector, q.query) DESC LIMIT %(limit)s""",
                {**params, "text": text, "limit": limit}).fetchall()
            rankings.append([row[0] for row in rows])
    fused = reciprocal_rank_fusion(rankings)
    top = sorted(fused, key=lambda chunk_id: fused[chunk_id], reverse=True)[:limit]
    if not top:
        return []
    rows = conn.execute(
        """SELECT chunk_id::text, url, title, author, category, published_at, text,
                  1 - (embedding <=> %(vector)s)
           FROM chunks WHERE chunk_id = ANY(%(ids)s::uuid[])""",
        {"ids": top, "vector": vectors[0]}).fetchall()
    chunks = [RetrievedChunk(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                             round(float(row[7]), 4), round(fused[row[0]], 6)) for row in rows]
    chunks.sort(key=lambda chunk: chunk.score, reverse=True)
    return chunks


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """score(d) = sum over rankings of 1 / (k + rank of d), ranks from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


@functools.cache
def load_reranker(model: str):  # -> sentence_transformers.CrossEncoder
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(model, device="cpu")
    except Exception as error:  # missing files, no network for a hub id
        raise TwinError(f"The reranker model {model!r} could not be loaded: {error}",
                        "set TWIN_RERANKER_MODEL to a local cross-encoder folder, or unset it.") from error


def rerank(model: str, question: str, chunks: list[RetrievedChunk]) -> list[RetrievedChunk]:
    """Re-order candidates by a cross-encoder's relevance score (only when one is configured)."""
    if not chunks:
        return chunks
    scores = load_reranker(model).predict([(question, chunk.text) for chunk in chunks])
    rescored = [RetrievedChunk(**{**chunk.__dict__, "score": round(float(score), 6)})
                for chunk, score in zip(chunks, scores, strict=True)]
    return sorted(rescored, key=lambda chunk: chunk.score, reverse=True)


@dataclass(frozen=True)
class Source:
    """One cited document; `number` is what the answer writes as [n]."""

    number: int
    url: str
    title: str
    author: str
    category: str
    snippet: str
    score: float
    chunk_ids: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"number": self.number, "url": self.url, "title": self.title, "author": self.author,
                "category": self.category, "snippet": self.snippet, "score": self.score}


@dataclass(frozen=True)
class PackedContext:
    text: str
    sources: list[Source]
    chunks: list[RetrievedChunk]  # the chunks that made it into the prompt
    tokens: int


def pack_context(
    chunks: Sequence[RetrievedChunk], *, k: int, token_budget: int, count_tokens: Callable[[str], int]
) -> PackedContext:
    """The best chunks that fit `token_budget`, at most k, numbered per source document."""
    numbers: dict[str, int] = {}
    kept: list[RetrievedChunk] = []
    blocks: list[tuple[int, str]] = []
    used = 0
    for chunk in chunks:
        if len(kept) == k:
            break
        cost = count_tokens(chunk.text) + 16  # the header line of the block
        if used + cost > token_budget:
            continue  # a smaller chunk further down may still fit
        number = numbers.setdefault(chunk.url, len(numbers) + 1)
        kept.append(chunk)
        blocks.append((number, f"[{number}] {chunk.title} ({chunk.category} by {chunk.author})\n{chunk.text}"))
        used += cost
    sources = []
    for url, number in numbers.items():
        mine = [chunk for chunk in kept if chunk.url == url]
        first = mine[0]
        sources.append(Source(number, url, first.title, first.author, first.category, _snippet(first.text),
                              max(chunk.score for chunk in mine), tuple(chunk.chunk_id for chunk in mine)))
    blocks.sort(key=lambda block: block[0])  # a source's chunks side by side
    return PackedContext("\n\n".join(text for _, text in blocks), sources, kept, used)


def _snippet(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
