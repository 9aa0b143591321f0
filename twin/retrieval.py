"""Retrieval, the one implementation behind `twin search`, `twin ask`, `/v1/rag`, the chat page and
the training's grounding: the query cleaned and embedded like the documents, self-query filters
(author, category, a date range), and vector, keyword or hybrid (RRF) rankings with every filter
inside SQL, plus an optional cross-encoder rerank.

Every result carries one score: `similarity`, the cosine similarity of the chunk to the question
(1 = same direction). The ranking that ordered it (RRF, a reranker) orders; it is not shown.
"""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Literal

import psycopg

from twin.cleaning import clean_prose
from twin.errors import TwinError
from twin.raw_store import list_twins

if TYPE_CHECKING:
    import numpy as np

    from twin.embedding import Embedder, QueryEncoder

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("vector", "keyword", "hybrid")

RRF_K = 60  # the constant of Cormack et al.; damps the weight of the very first ranks
MIN_CANDIDATES = 20  # each leg's list length is max(4 k, this)
HNSW_EF_SEARCH = 100  # measured in bench/retrieval.py (docs/benchmarks.md, Retrieval)
# The keyword leg ranks the chunks holding the question's rarest words, rarest first, as long as
# together they are in at most KEYWORD_BUDGET chunks (and always the rarest one), at most
# KEYWORD_TERMS words; plus the chunks holding every word. The bench measures what this loses.
KEYWORD_BUDGET = 2000
KEYWORD_TERMS = 8
MAX_QUERY_CHARS = 2000  # the model reads ~256 tokens; the keyword leg needs no more either
# A chunk at least this similar to the question may be answered from; when none is, the twin has
# nothing on the question. Set from the labelled set (docs/benchmarks.md, Retrieval (c)): with
# all-MiniLM-L6-v2 the best chunk of on-topic questions scores 0.198-0.8 and of off-topic ones
# 0.19-0.36, so no value separates them; 0.25 answers 46 of 48 on-topic questions and refuses 5-6
# of 8 off-topic ones. The same number is dbt's var('relevance_threshold').
RELEVANCE_THRESHOLD = 0.25
CATEGORY_WORDS = {
    "article": ("article", "articles", "essay", "essays", "blog post", "blog posts"),
    "post": ("post", "posts", "update", "updates"),
    "repository": ("repository", "repositories", "repo", "repos", "code", "source code"),
}
_LEXEME = re.compile(r"(!?)'((?:[^']|'')+)'")


class OutOfScope(TwinError):
    """The only twin a request can be about is one the caller's API key does not cover (403)."""

    def __init__(self, twin: str) -> None:
        super().__init__(f"This API key is not allowed to use twin {twin!r}.",
                         "ask about a twin your key covers (GET /v1/models lists them).")
        self.twin = twin


@dataclass(frozen=True)
class QueryFilters:
    twin: str | None = None
    category: str | None = None
    published_from: date | None = None  # inclusive
    published_until: date | None = None  # inclusive
    scope: frozenset[str] | None = None  # the twins the caller's key may read (None: every twin)

    def describe(self) -> dict[str, object]:
        """The filters as shown to users and logged (only the ones set)."""
        shown: dict[str, object] = {"twin": self.twin, "category": self.category}
        if self.published_from or self.published_until:
            shown["published"] = [_iso(self.published_from), _iso(self.published_until)]
        if self.scope is not None:
            shown["scope"] = sorted(self.scope)
        return shown


@dataclass(frozen=True)
class SelfQueryResult:
    filters: QueryFilters
    notes: tuple[str, ...] = ()  # what was seen but not used, e.g. a name two twins share


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
        row["published_at"] = _iso(self.published_at)
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


# --- the query ---------------------------------------------------------------------------------

def clean_query(text: str) -> str:
    """The question as the documents were cleaned (markup, emoji, NFKC folding), one line, capped;
    empty when no letter or digit is left (only punctuation or symbols)."""
    cleaned = " ".join(clean_prose(text).split())[:MAX_QUERY_CHARS]
    return cleaned if any(character.isalnum() for character in cleaned) else ""


def encode_queries(embedder: Embedder | QueryEncoder, texts: Sequence[str]) -> np.ndarray:
    """Unit vectors of `texts` cleaned like the documents (one batch); what search, `twin embed`
    and `/v1/embeddings` all use."""
    cleaned = [clean_query(text) for text in texts]
    if not all(cleaned):
        raise TwinError("The text is empty once cleaned (only spaces, punctuation, markup or emoji).",
                        'pass some words, e.g. twin embed "postgres bloat".')
    return embedder.encode(cleaned)


# --- self-query ----------------------------------------------------------------------------------

class SelfQuery:
    """Finds author and category filters in a question with a spaCy entity ruler built from the
    twins table (names, slugs, unique first and last names) and the category words, and a date
    range in phrases like "in 2023", "since 2021", "last year"."""

    def __init__(self, twins: Sequence[tuple[str, str]]) -> None:
        import spacy

        self.twins = tuple(twins)
        self._nlp = spacy.blank("en")
        ruler = self._nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
        patterns: list[dict[str, str]] = []
        phrases, self._shared = _author_phrases(self.twins)
        for slug, found in phrases.items():
            patterns += [{"label": "AUTHOR", "pattern": phrase, "id": slug} for phrase in found]
        for part in self._shared:
            patterns.append({"label": "SHARED", "pattern": part, "id": part})
        for category, words in CATEGORY_WORDS.items():
            patterns += [{"label": "CATEGORY", "pattern": word, "id": category} for word in words]
        ruler.add_patterns(patterns)  # type: ignore[attr-defined]

    def parse(self, question: str, today: date | None = None) -> SelfQueryResult:
        twin = category = None
        notes: list[str] = []
        for entity in self._nlp(_fold(question)[:MAX_QUERY_CHARS]).ents:
            if entity.label_ == "AUTHOR" and twin is None:
                twin = entity.ent_id_
            elif entity.label_ == "SHARED" and twin is None:
                owners = ", ".join(self._shared[entity.ent_id_])
                notes.append(f"{entity.text!r} names more than one twin ({owners}): no author filter")
            elif entity.label_ == "CATEGORY" and category is None:
                category = entity.ent_id_
        if twin is not None:
            notes = [note for note in notes if not note.startswith("'")]  # a full name settled it
        start, end, note = date_range(question, today or date.today())
        if note:
            notes.append(note)
        return SelfQueryResult(QueryFilters(twin=twin, category=category, published_from=start,
                                            published_until=end), tuple(notes))

    def filters(self, question: str, today: date | None = None) -> QueryFilters:
        return self.parse(question, today).filters


@functools.lru_cache(maxsize=8)
def self_query_for(twins: tuple[tuple[str, str], ...]) -> SelfQuery:
    """One ruler per set of twins (rebuilt when the twins table changes)."""
    return SelfQuery(twins)


def _author_phrases(twins: Sequence[tuple[str, str]]) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """Each twin's phrases (full name, slug, a first or last name no other twin has), and the first
    and last names that several twins share (ambiguous: no filter, a note)."""
    phrases: dict[str, set[str]] = {slug: {_fold(name).lower(), slug.replace("-", " "), slug} for slug, name in twins}
    shared: dict[str, list[str]] = {}
    for position in (0, -1):
        owners: dict[str, set[str]] = {}
        for slug, name in twins:
            parts = _fold(name).lower().split()
            if len(parts) > 1:
                owners.setdefault(parts[position], set()).add(slug)
        for part, slugs in owners.items():
            if len(part) <= 2:
                continue
            if len(slugs) == 1:
                phrases[next(iter(slugs))].add(part)
            else:
                shared[part] = sorted(slugs)
    return phrases, shared


def _fold(text: str) -> str:
    """Accents off ("Tomás" -> "Tomas") so a question typed without them still matches."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
_YEAR = r"(\d{4})"
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("month", re.compile(rf"\b(?:in|during|from|of)\s+{_MONTH}\s+{_YEAR}\b", re.I)),
    ("between", re.compile(rf"\bbetween\s+{_YEAR}\s+and\s+{_YEAR}\b", re.I)),
    ("span", re.compile(rf"\b(?:from\s+)?{_YEAR}\s*(?:-|–|to|until)\s*{_YEAR}\b", re.I)),
    ("since", re.compile(rf"\b(?:since|after)\s+{_YEAR}\b", re.I)),
    ("before", re.compile(rf"\bbefore\s+{_YEAR}\b", re.I)),
    ("year", re.compile(rf"\b(?:in|during|from|of)\s+(?:the\s+year\s+)?{_YEAR}\b", re.I)),
    ("last_years", re.compile(r"\b(?:in\s+)?the\s+(?:last|past)\s+(\d{1,2}|two|three|four|five)\s+years\b", re.I)),
    ("last_year", re.compile(r"\blast\s+year\b", re.I)),
    ("this_year", re.compile(r"\bthis\s+year\b", re.I)),
]
_SMALL = {"two": 2, "three": 3, "four": 4, "five": 5}
_VAGUE = re.compile(r"\b(?:last|past|next|this)\s+(?:decade|century|season|summer|winter|spring|autumn|fall|"
                    r"quarter|week|month|while|time)\b|\bnext\s+year\b|\b(?:recently|lately)\b", re.I)


def date_range(question: str, today: date) -> tuple[date | None, date | None, str | None]:
    """(first day, last day, note) of the period the question names; a phrase that names no
    usable period gives no filter and a note saying so."""
    for kind, pattern in _DATE_PATTERNS:
        match = pattern.search(question)
        if match is None:
            continue
        groups = match.groups()
        if kind == "month":
            month, year = _MONTHS[groups[0].lower()], int(groups[1])
            start, end = date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        elif kind in ("between", "span"):
            start, end = date(int(groups[0]), 1, 1), date(int(groups[1]), 12, 31)
        elif kind == "since":
            start, end = date(int(groups[0]) + (match.group(0).lower().startswith("after")), 1, 1), None
        elif kind == "before":
            start, end = None, date(int(groups[0]) - 1, 12, 31)
        elif kind == "year":
            start, end = date(int(groups[0]), 1, 1), date(int(groups[0]), 12, 31)
        elif kind == "last_years":
            years = int(groups[0]) if groups[0].isdigit() else _SMALL[groups[0].lower()]
            start, end = date(today.year - years, today.month, 1), today
        elif kind == "last_year":
            start, end = date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
        else:
            start, end = date(today.year, 1, 1), today
        for bound in (start, end):
            if bound is not None and not 1900 <= bound.year <= today.year + 1:
                return None, None, f"{match.group(0).strip()!r} is not a period the writing can be from: no date filter"
        if start and end and start > end:
            return None, None, f"{match.group(0).strip()!r} ends before it starts: no date filter"
        return start, end, None
    vague = _VAGUE.search(question)
    if vague:
        return None, None, f"{vague.group(0)!r} is not a date range search understands: no date filter"
    return None, None, None


def scoped_filters(found: QueryFilters, twin: str | None, category: str | None,
                   scope: frozenset[str] | None) -> QueryFilters:
    """A request's filters: its own twin and category, else the ones self-query found, always within
    `scope` (self-query may narrow a key's twins, never widen them)."""
    twin = twin or found.twin
    if scope is not None and twin is not None and twin not in scope:
        raise OutOfScope(twin)
    if scope is not None and not scope:
        raise OutOfScope("any")
    return replace(found, twin=twin, category=category or found.category,
                   scope=None if scope is None or twin is not None else scope)


# --- rankings ------------------------------------------------------------------------------------

@dataclass
class _Where:
    sql: str
    params: dict[str, object] = field(default_factory=dict)


def _where(filters: QueryFilters, model_id: str) -> _Where:
    """Every filter as SQL, the same for every ranking: scope is enforced where the data is read."""
    parts, params = ["embedding IS NOT NULL", "embedding_model = %(model)s"], {"model": model_id}
    if filters.twin is not None:
        parts.append("twin = %(twin)s")
        params["twin"] = filters.twin
    if filters.scope is not None:  # a scoped API key reads its own twins only, whatever else matched
        parts.append("twin = ANY(%(scope)s)")
        params["scope"] = sorted(filters.scope)
    if filters.category is not None:
        parts.append("category = %(category)s")
        params["category"] = filters.category
    if filters.published_from is not None:
        parts.append("published_at >= %(published_from)s")
        params["published_from"] = filters.published_from
    if filters.published_until is not None:
        parts.append("published_at <= %(published_until)s")
        params["published_until"] = filters.published_until
    return _Where(" AND ".join(parts), params)


def vector_ranking(conn: psycopg.Connection, vector: np.ndarray, where: _Where, limit: int,
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


def query_terms(conn: psycopg.Connection, text: str, where: _Where) -> tuple[list[str], list[str], str]:
    """(informative lexemes, every lexeme, the websearch tsquery) of `text`: user syntax ("quoted
    phrases", or, -word) through websearch_to_tsquery; informative = the rarest, by chunk_terms."""
    twins = "t.twin = %(twin)s" if "twin" in where.params else "TRUE"
    if "scope" in where.params:
        twins += " AND t.twin = ANY(%(scope)s)"
    rows = conn.execute(  # one round trip: the parsed query and each lexeme's chunk count
        f"""WITH q AS (SELECT websearch_to_tsquery('english', %(text)s) AS every)
            SELECT q.every::text, m[1], m[2],
                   (SELECT sum(t.chunks)::bigint FROM chunk_terms t
                    WHERE t.lexeme = replace(m[2], '''''', '''') AND {twins})
            FROM q, regexp_matches(q.every::text, %(pattern)s, 'g') WITH ORDINALITY AS r(m, position)
            ORDER BY position""",
        {**where.params, "text": text, "pattern": _LEXEME.pattern}).fetchall()
    query = rows[0][0] if rows else ""
    negated = {quoted.replace("''", "'") for _, bang, quoted, _ in rows if bang}
    lexemes: list[str] = []
    frequency: dict[str, int] = {}
    for _, bang, quoted, chunks in rows:
        lexeme = quoted.replace("''", "'")
        if not bang and lexeme not in negated and lexeme not in lexemes:
            lexemes.append(lexeme)
            frequency[lexeme] = int(chunks or 0)
    if not lexemes:
        return [], [], query
    informative, total = [], 0
    for lexeme in sorted((lexeme for lexeme in lexemes if frequency.get(lexeme)),
                         key=lambda lexeme: (frequency[lexeme], lexeme)):
        if informative and (total + frequency[lexeme] > KEYWORD_BUDGET or len(informative) == KEYWORD_TERMS):
            break
        informative.append(lexeme)
        total += int(frequency[lexeme])
    return informative, lexemes, query


def keyword_ranking(conn: psycopg.Connection, text: str, where: _Where, limit: int) -> list[str]:
    """Chunk ids by ts_rank_cd against all the question's words, over a bounded candidate set: the
    chunks holding every word, and the chunks holding its informative words."""
    informative, lexemes, every = query_terms(conn, text, where)
    if not informative:
        return []
    rows = conn.execute(
        f"""WITH q AS (SELECT %(every)s::tsquery AS every, %(informative)s::tsquery AS informative,
                              %(ranking)s::tsquery AS ranking),
                 candidates AS (
                     SELECT DISTINCT ON (chunk_id) chunk_id, search_vector FROM (
                         (SELECT chunk_id, search_vector FROM chunks, q
                          WHERE {where.sql} AND search_vector @@ q.every LIMIT %(budget)s)
                         UNION ALL
                         (SELECT chunk_id, search_vector FROM chunks, q
                          WHERE {where.sql} AND search_vector @@ q.informative LIMIT %(budget)s)) found
                     ORDER BY chunk_id)
            SELECT chunk_id::text FROM candidates, q
            ORDER BY ts_rank_cd(search_vector, q.ranking) DESC, chunk_id LIMIT %(limit)s""",
        {**where.params, "every": every, "informative": _any_of(informative), "ranking": _any_of(lexemes),
         "budget": KEYWORD_BUDGET, "limit": limit}).fetchall()
    return [row[0] for row in rows]


def _any_of(lexemes: Sequence[str]) -> str:
    """A tsquery text matching any of the (already normalised) lexemes."""
    return " | ".join("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)


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
    where = _where(filters, model_id)
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


# --- the keyword leg's term table, kept by the feature pipeline ---------------------------------

def refresh_chunk_terms(conn: psycopg.Connection, twin: str) -> int:
    """Recount the document frequency of each lexeme over the twin's chunks; returns the lexemes."""
    with conn.transaction():
        conn.execute("DELETE FROM chunk_terms WHERE twin = %s", (twin,))
        cursor = conn.execute(
            """INSERT INTO chunk_terms (lexeme, twin, chunks)
               SELECT word, %(twin)s, ndoc FROM ts_stat(format('SELECT search_vector FROM chunks WHERE twin = %%L',
                                                               %(twin)s::text))""",
            {"twin": twin})
    return cursor.rowcount


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


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None
