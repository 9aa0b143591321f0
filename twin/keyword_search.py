"""The keyword leg of retrieval: Postgres full-text ranking (ts_rank_cd) over a bounded candidate
set chosen from the question's rarest words, and the `chunk_terms` table of each lexeme's chunk
count that the feature pipeline keeps for it."""

from __future__ import annotations

import re
from collections.abc import Sequence

import psycopg

from twin.query import Where

# The keyword leg ranks the chunks holding the question's rarest words, rarest first, as long as
# together they are in at most KEYWORD_BUDGET chunks (and always the rarest one), at most
# KEYWORD_TERMS words; plus the chunks holding every word. The bench measures what this loses.
KEYWORD_BUDGET = 2000
KEYWORD_TERMS = 8
_LEXEME = re.compile(r"(!?)'((?:[^']|'')+)'")


def query_terms(conn: psycopg.Connection, text: str, where: Where) -> tuple[list[str], list[str], str]:
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


def keyword_ranking(conn: psycopg.Connection, text: str, where: Where, limit: int) -> list[str]:
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
        {**where.params, "every": every, "informative": tsquery_any_of(informative), "ranking": tsquery_any_of(lexemes),
         "budget": KEYWORD_BUDGET, "limit": limit}).fetchall()
    return [row[0] for row in rows]


def tsquery_any_of(lexemes: Sequence[str]) -> str:
    """A tsquery text matching any of the (already normalised) lexemes."""
    return " | ".join("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)


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

