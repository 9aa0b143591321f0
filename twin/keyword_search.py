"""The keyword leg of retrieval: BM25 without length normalisation (each chunk scores the inverse
document frequency, idf, of the question's words it holds, saturated by how often it holds them)
over a bounded candidate set chosen from the question's rarest words; and the `chunk_terms` /
`chunk_term_totals` tables of each lexeme's chunk count that the feature pipeline keeps for it.

Why BM25 and not `ts_rank_cd`: ts_rank_cd weighs every word alike, so a chunk holding five common
words of the question outranks one holding its one rare word, and finding those chunks means
ranking every chunk that shares any word. With idf the rare words carry the score, so the chunks
holding none of them rarely reach the top, and ranking the chunks holding the rarest words, then
the few others whose words could still outrank those (a second round), loses little at a million
chunks (bench/retrieval.py measures it against the same score over every matching chunk).
"""

from __future__ import annotations

import itertools
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
# Round 2: sets of the OTHER_TERMS rarest words not in round 1, reaching its last score with each
# word's idf x TF_ALLOWANCE (BM25 of a word there twice: 2 x 2.2 / 3.2 = 1.375; measured in bench/retrieval.py).
OTHER_TERMS = 8
TF_ALLOWANCE = 1.375
TIE = 1e-6  # a set whose idf sum is this close to the threshold counts as reaching it (rounding)
_LEXEME = re.compile(r"(!?)'((?:[^']|'')+)'")


@dataclass(frozen=True)
class QueryTerms:
    every: str  # the question as websearch_to_tsquery parses it ("" when it has no words)
    lexemes: list[str]  # the words found in the searched twins' chunks, rarest first
    weights: list[float]  # the idf of each lexeme
    counts: list[float]  # the chunks holding each lexeme (its document frequency)
    informative: list[str]  # the rarest lexemes, which choose the candidates

    def score_params(self) -> dict[str, object]:
        """The query parameters of TERM_WEIGHTS."""
        return {"lexemes": self.lexemes, "weights": self.weights}

    @property
    def sampled(self) -> bool:
        """Whether the informative words are in more chunks than KEYWORD_BUDGET (the rarest word
        alone is), so that the candidates holding them are a sample."""
        return sum(self.counts[:len(self.informative)]) > KEYWORD_BUDGET


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
                      [idf for _, _, idf in found], [df for _, df, _ in found], informative)


def keyword_ranking(conn: psycopg.Connection, text: str, where: Where, limit: int) -> list[str]:
    """Chunk ids by BM25 of the question's words each holds, best first.

    Round 1 scores the chunks holding every word and the chunks holding its informative (rarest)
    words. A chunk holding none of those can still outrank them by holding several of the other
    words, so round 2 asks the GIN index for the chunks holding a set of the other words whose idf
    sum (x TF_ALLOWANCE) reaches the `limit`-th score of round 1 (MaxScore's bound) and scores them
    too. Counting a word's occurrences costs more than seeing that it is there, so each round
    orders its candidates by idf sum first (BM25 with every count 1, a lower bound) and counts
    words only for the RESCORED best of them and the RESCORED / 4 longest of the best (where words
    repeat)."""
    terms = query_terms(conn, text, where)
    if not terms.informative:
        return []
    params = {**where.params, **terms.score_params(), "budget": KEYWORD_BUDGET, "rescored": max(RESCORED, limit),
              "limit": limit, "every": terms.every, "informative": tsquery_any_of(terms.informative)}
    scored = _scored(conn, where, "(search_vector @@ %(every)s::tsquery)", "(search_vector @@ %(informative)s::tsquery)",
                     params)
    threshold = scored[limit - 1][1] if len(scored) >= limit else 0.0
    others = tsquery_sets(_reaching_sets(terms, threshold))
    if others:
        unseen = "" if terms.sampled else " AND NOT search_vector @@ %(informative)s::tsquery"
        scored += _scored(conn, where, f"(search_vector @@ %(others)s::tsquery{unseen})", None, {**params, "others": others})
    best = {row[0]: row for row in scored}
    return sorted(best, key=lambda chunk_id: (-best[chunk_id][1], best[chunk_id][2], chunk_id))[:limit]


def _scored(conn: psycopg.Connection, where: Where, first: str, second: str | None,
            params: dict[str, object]) -> list[tuple[str, float, int]]:
    """(chunk id, BM25, distinct words) of the best candidates matching `first` or `second`, each
    branch at most KEYWORD_BUDGET chunks."""
    branches = [f"(SELECT chunk_id, search_vector FROM chunks WHERE {where.sql} AND {match} LIMIT %(budget)s)"
                for match in (first, second) if match]
    rows = conn.execute(
        f"""WITH {TERM_WEIGHTS},
                 candidates AS MATERIALIZED (
                     SELECT chunk_id, search_vector, {IDF_SUM} AS idf_sum FROM ({" UNION ".join(branches)}) c),
                 bounded AS (
                     (SELECT chunk_id, search_vector FROM candidates
                      ORDER BY idf_sum DESC, length(search_vector), chunk_id LIMIT %(rescored)s)
                     UNION
                     (SELECT chunk_id, search_vector FROM candidates
                      ORDER BY idf_sum DESC, length(search_vector) DESC, chunk_id LIMIT %(rescored)s / 4))
            SELECT chunk_id::text, {BM25_SCORE} AS score, length(search_vector) FROM bounded
            ORDER BY score DESC, length(search_vector), chunk_id LIMIT %(limit)s""", params).fetchall()
    return [(row[0], float(row[1]), int(row[2])) for row in rows]


def _reaching_sets(terms: QueryTerms, threshold: float) -> list[tuple[str, ...]]:
    """The smallest sets of the question's words whose idf sum, times TF_ALLOWANCE, reaches
    `threshold`, among the OTHER_TERMS rarest words that round 1 did not take every chunk of (all of
    them when it took a sample of the rarest word's chunks): a chunk holding none of these sets
    scores below `threshold` unless its words are there more than about twice (BM25 counts a word
    twice as 1.375 times once). A word in more than KEYWORD_BUDGET chunks is not a set alone (its
    chunks would be an arbitrary sample) but only with another word, unless round 1 found fewer
    chunks than the list holds (`threshold` 0)."""
    pool = [(lexeme, idf, df) for lexeme, idf, df in zip(terms.lexemes, terms.weights, terms.counts, strict=True)
            if terms.sampled or lexeme not in terms.informative][:OTHER_TERMS]
    found: list[tuple[str, ...]] = []
    for size in range(1, len(pool) + 1):
        for combination in itertools.combinations(pool, size):
            words = tuple(lexeme for lexeme, _, _ in combination)
            if TF_ALLOWANCE * sum(idf for _, idf, _ in combination) >= threshold - TIE \
                    and (size > 1 or combination[0][2] <= KEYWORD_BUDGET or threshold <= 0) \
                    and not any(set(smaller) <= set(words) for smaller in found):
                found.append(words)
    return found


def tsquery_sets(sets: Sequence[Sequence[str]]) -> str:
    """A tsquery text matching a chunk holding every word of any of `sets`."""
    return " | ".join("(" + " & ".join(_quoted(lexeme) for lexeme in words) + ")" for words in sets)


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
    return " | ".join(_quoted(lexeme) for lexeme in lexemes)


def _quoted(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


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
