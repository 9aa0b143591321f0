"""The keyword leg of retrieval: BM25 without length normalisation (each chunk scores the inverse
document frequency, idf, of the question's words it holds, saturated by how often it holds them)
over a bounded candidate set chosen from the question's rarest words; and the `chunk_terms` /
`chunk_term_totals` tables of each lexeme's chunk count that the feature pipeline keeps for it.

Why BM25 and not `ts_rank_cd`: ts_rank_cd weighs every word alike, so a chunk holding five common
words of the question outranks one holding its one rare word, and finding those chunks means
ranking every chunk that shares any word. With idf the rare words carry the score, so the chunks
holding none of them rarely reach the top, and ranking only the chunks holding the rarest words
loses little (bench/retrieval.py measures it against the same score over every matching chunk).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from twin.query import Where

# Candidates: the chunks holding every word, plus those holding the question's rarest words, rarest
# first, as long as together they are in at most KEYWORD_BUDGET chunks (and always the rarest one),
# at most KEYWORD_TERMS words. Scored: the SCORED_TERMS most informative words (a 10,000-character
# question has hundreds). Ties: the chunk with fewer distinct words first, then by id.
KEYWORD_BUDGET = 5000
KEYWORD_TERMS = 8
SCORED_TERMS = 32
_LEXEME = re.compile(r"(!?)'((?:[^']|'')+)'")


@dataclass(frozen=True)
class QueryTerms:
    every: str  # the question as websearch_to_tsquery parses it ("" when it has no words)
    lexemes: list[str]  # the words found in the searched twins' chunks, rarest first
    weights: list[float]  # the idf of each lexeme
    informative: list[str]  # the rarest lexemes, which choose the candidates

    def score_params(self) -> dict[str, object]:
        """The query parameters of TERM_WEIGHTS."""
        return {"lexemes": self.lexemes, "weights": self.weights}


def query_terms(conn: psycopg.Connection, text: str, where: Where) -> QueryTerms:
    """The question's lexemes with their idf over the searched twins: user syntax ("quoted
    phrases", or, -word) through websearch_to_tsquery; negated words are not scored."""
    twins = "t.twin = %(twin)s" if "twin" in where.params else "TRUE"
    if "scope" in where.params:
        twins += " AND t.twin = ANY(%(scope)s)"
    rows = conn.execute(  # one round trip: the parsed query, each lexeme's chunk count, and N
        f"""WITH q AS (SELECT websearch_to_tsquery('english', %(text)s) AS every),
                 n AS (SELECT coalesce(sum(t.chunks), 0)::float8 AS chunks FROM chunk_term_totals t WHERE {twins}),
                 words AS (SELECT m[1] = '!' AS negated, replace(m[2], '''''', '''') AS lexeme, position
                           FROM q, regexp_matches(q.every::text, %(pattern)s, 'g') WITH ORDINALITY AS r(m, position)),
                 scored AS (SELECT lexeme, min(position) AS position FROM words
                            WHERE NOT negated AND lexeme NOT IN (SELECT lexeme FROM words WHERE negated)
                            GROUP BY lexeme)
            SELECT q.every::text, s.lexeme, f.df, ln(1 + (n.chunks - f.df + 0.5) / (f.df + 0.5))
            FROM q CROSS JOIN n LEFT JOIN scored s ON TRUE
                 LEFT JOIN LATERAL (SELECT sum(t.chunks)::float8 AS df FROM chunk_terms t
                                    WHERE t.lexeme = s.lexeme AND {twins}) f ON TRUE
            ORDER BY f.df NULLS LAST, s.lexeme COLLATE "C" """,
        {**where.params, "text": text, "pattern": _LEXEME.pattern}).fetchall()
    every = rows[0][0] if rows else ""
    found = [(lexeme, float(df), float(idf)) for _, lexeme, df, idf in rows if lexeme is not None and df]
    found = found[:SCORED_TERMS]
    informative: list[str] = []
    total = 0.0
    for lexeme, df, _ in found:
        if informative and (total + df > KEYWORD_BUDGET or len(informative) == KEYWORD_TERMS):
            break
        informative.append(lexeme)
        total += df
    return QueryTerms(every if found else "", [lexeme for lexeme, _, _ in found],
                      [idf for _, _, idf in found], informative)


def keyword_ranking(conn: psycopg.Connection, text: str, where: Where, limit: int) -> list[str]:
    """Chunk ids by BM25 of the question's words each holds, over the candidates: the chunks holding
    every word, and the chunks holding its informative words. Counting a word's occurrences in a
    chunk costs more than seeing that it is there, so the candidates are first ordered by their
    idf sum (BM25 with every count 1, a lower bound of BM25 and 1/2.2 of an upper one), and only
    the RESCORED best of them get the full BM25."""
    terms = query_terms(conn, text, where)
    if not terms.informative:
        return []
    rows = conn.execute(
        f"""WITH {TERM_WEIGHTS},
                 q AS (SELECT %(every)s::tsquery AS every, %(informative)s::tsquery AS informative),
                 candidates AS (
                     (SELECT chunk_id, search_vector FROM chunks, q
                      WHERE {where.sql} AND search_vector @@ q.every LIMIT %(budget)s)
                     UNION
                     (SELECT chunk_id, search_vector FROM chunks, q
                      WHERE {where.sql} AND search_vector @@ q.informative LIMIT %(budget)s)),
                 bounded AS (
                     SELECT chunk_id, search_vector FROM candidates
                     ORDER BY {IDF_SUM} DESC, length(search_vector), chunk_id LIMIT %(rescored)s)
            SELECT chunk_id::text FROM bounded
            ORDER BY {BM25_SCORE} DESC, length(search_vector), chunk_id LIMIT %(limit)s""",
        {**where.params, **terms.score_params(), "every": terms.every, "informative": tsquery_any_of(terms.informative),
         "budget": KEYWORD_BUDGET, "rescored": max(RESCORED, limit), "limit": limit}).fetchall()
    return [row[0] for row in rows]


# A chunk's keyword score, BM25's without length normalisation: for each of the question's words it
# holds, idf x tf (k1 + 1) / (tf + k1), tf = the word's count in the chunk (rounded so that the sum's
# order cannot reorder equal scores); `term_weights` holds one (lexeme, idf) row per scored word.
BM25_K1 = 1.2
TERM_WEIGHTS = """term_weights AS (
    SELECT lexeme, idf, ('''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''')::tsquery AS query
    FROM unnest(%(lexemes)s::text[], %(weights)s::float8[]) AS w(lexeme, idf))"""
BM25_SCORE = f"""(SELECT round(coalesce(sum(term_weights.idf * cardinality(held.positions) * {BM25_K1 + 1}
                                        / (cardinality(held.positions) + {BM25_K1})), 0)::numeric, 9)
                 FROM unnest(search_vector) held JOIN term_weights USING (lexeme))"""
# The idf sum of the question's words a chunk holds: BM25 with every count 1, so a chunk's BM25 lies
# between it and (k1 + 1) times it. Seeing that a word is there (a binary search of the tsvector)
# is cheaper than counting it (unnesting the tsvector), so only the RESCORED best candidates by
# this sum get BM25_SCORE.
IDF_SUM = """(SELECT round(coalesce(sum(term_weights.idf), 0)::numeric, 9) FROM term_weights
             WHERE search_vector @@ term_weights.query)"""
RESCORED = 400


def tsquery_any_of(lexemes: Sequence[str]) -> str:
    """A tsquery text matching any of the (already normalised) lexemes."""
    return " | ".join("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)


def refresh_chunk_terms(conn: psycopg.Connection, twin: str) -> int:
    """Recount the document frequency of each lexeme over the twin's chunks, and the twin's chunk
    count; returns the lexemes."""
    with conn.transaction():
        conn.execute("DELETE FROM chunk_terms WHERE twin = %s", (twin,))
        cursor = conn.execute(
            """INSERT INTO chunk_terms (lexeme, twin, chunks)
               SELECT word, %(twin)s, ndoc FROM ts_stat(format('SELECT search_vector FROM chunks WHERE twin = %%L',
                                                               %(twin)s::text))""",
            {"twin": twin})
        conn.execute(
            """INSERT INTO chunk_term_totals (twin, chunks) SELECT %(twin)s, count(*) FROM chunks WHERE twin = %(twin)s
               ON CONFLICT (twin) DO UPDATE SET chunks = excluded.chunks""",
            {"twin": twin})
    return cursor.rowcount
