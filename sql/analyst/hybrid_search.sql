-- Hybrid search, the same ranking as `twin search` (twin/retrieval.py; a test pins the two):
-- a vector ranking (HNSW cosine) and a keyword ranking fused with reciprocal rank fusion,
-- score = sum over both lists of 1 / (60 + rank), so a chunk found by one list only still counts,
-- and one found by both rises. Each list holds greatest(4 k, 20) chunks.
-- The keyword list (twin/keyword_search.py) scores each chunk by BM25 without length
-- normalisation: for each of the question's words it holds, idf x tf 2.2 / (tf + 1.2), tf its
-- count in the chunk, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), with df from
-- analyst.chunk_terms and N from analyst.chunk_term_totals (the 32 rarest words score; ties: fewer
-- distinct words, then id). It scores candidates in two rounds.
--   first_round: the chunks holding all of the question's words or its informative ones (the
--   rarest words, rarest first, while together they are in at most 5,000 chunks, always the
--   rarest, at most 8 words).
--   second_round: a chunk holding none of those can still score higher by holding several of the
--   other words, so it takes the chunks holding a set of the 8 rarest other words whose idf sum
--   times 1.375 (the words there twice) reaches the first round's last score (all words are
--   "other" when the rarest one alone is in more than 5,000 chunks; a word in more than 5,000
--   chunks forms a set only with another, unless the first round found fewer than the list).
-- In each round only the 400 candidates with the highest idf sum of the words they hold (BM25
-- with every count 1: a lower bound of BM25), plus the 100 longest of that order (where words
-- repeat), get the full BM25.
-- User syntax ("a phrase", or, -word) goes through websearch_to_tsquery.
-- psql variables: query_text (words), query_embedding (`twin embed` of the same words),
-- k (number of rows). To filter, add the same condition (e.g. twin = 'maya-lindqvist') to the
-- three `FROM analyst.chunks` below.
SET hnsw.ef_search = 150;
SET hnsw.iterative_scan = relaxed_order;

WITH settings AS (
    SELECT greatest(4 * :k, 20) AS candidates, 5000 AS budget, 8 AS max_terms, 32 AS scored_terms,
           greatest(400, 4 * :k, 20) AS rescored, 8 AS other_terms,
           1.375::float8 AS tf_allowance
),
q AS (
    SELECT websearch_to_tsquery('english', :'query_text') AS every
),
words AS (
    SELECT replace(m[2], '''''', '''') AS lexeme, m[1] = '!' AS negated
    FROM q, regexp_matches(q.every::text, '(!?)''((?:[^'']|'''')+)''', 'g') AS m
),
lexemes AS (
    SELECT DISTINCT lexeme FROM words
    WHERE NOT negated AND lexeme NOT IN (SELECT lexeme FROM words WHERE negated)
),
total AS (
    SELECT coalesce(sum(chunks), 0)::float8 AS n FROM analyst.chunk_term_totals
),
frequencies AS (
    SELECT l.lexeme, sum(t.chunks)::float8 AS df
    FROM lexemes l JOIN analyst.chunk_terms t USING (lexeme)
    GROUP BY l.lexeme
),
ordered AS (
    SELECT lexeme, df, row_number() OVER w AS n, sum(df) OVER w AS cumulative,
           ('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''')::tsquery AS query
    FROM frequencies
    WINDOW w AS (ORDER BY df, lexeme COLLATE "C")
),
term_weights AS (
    SELECT ordered.lexeme, ordered.query, ln(1 + (total.n - ordered.df + 0.5) / (ordered.df + 0.5)) AS idf
    FROM ordered, total, settings WHERE ordered.n <= settings.scored_terms
),
queries AS (
    SELECT q.every,
           (SELECT string_agg(ordered.query::text, ' | ')
            FROM ordered, settings WHERE n = 1 OR (n <= max_terms AND cumulative <= budget))::tsquery AS informative,
           (SELECT df > settings.budget FROM ordered, settings WHERE n = 1) AS sampled
    FROM q
),
semantic AS (
    SELECT chunk_id, row_number() OVER (ORDER BY distance, chunk_id) AS rank
    FROM (
        SELECT chunk_id, embedding <=> :'query_embedding' AS distance
        FROM analyst.chunks
        WHERE embedding IS NOT NULL
        ORDER BY embedding <=> :'query_embedding'
        LIMIT (SELECT candidates FROM settings)
    ) nearest
),
candidates AS (
    (SELECT chunk_id, search_vector FROM analyst.chunks, queries
     WHERE embedding IS NOT NULL AND search_vector @@ queries.every
     LIMIT (SELECT budget FROM settings))
    UNION
    (SELECT chunk_id, search_vector FROM analyst.chunks, queries
     WHERE embedding IS NOT NULL AND search_vector @@ queries.informative
     LIMIT (SELECT budget FROM settings))
),
first_round AS (
    SELECT chunk_id, words, score FROM (
        SELECT chunk_id, length(search_vector) AS words,
               (SELECT round(coalesce(sum(term_weights.idf * cardinality(held.positions) * 2.2
                                          / (cardinality(held.positions) + 1.2)), 0)::numeric, 9)
                FROM unnest(bounded.search_vector) held JOIN term_weights USING (lexeme)) AS score
        FROM (
            (SELECT chunk_id, search_vector FROM candidates
             ORDER BY (SELECT round(coalesce(sum(term_weights.idf), 0)::numeric, 9) FROM term_weights
                       WHERE candidates.search_vector @@ term_weights.query) DESC,
                      length(search_vector), chunk_id
             LIMIT (SELECT rescored FROM settings))
            UNION
            (SELECT chunk_id, search_vector FROM candidates
             ORDER BY (SELECT round(coalesce(sum(term_weights.idf), 0)::numeric, 9) FROM term_weights
                       WHERE candidates.search_vector @@ term_weights.query) DESC,
                      length(search_vector) DESC, chunk_id
             LIMIT (SELECT rescored / 4 FROM settings))
        ) bounded, queries
        WHERE queries.informative IS NOT NULL
    ) scored
    ORDER BY score DESC, words, chunk_id
    LIMIT (SELECT candidates FROM settings)
),
threshold AS (
    SELECT CASE WHEN count(*) >= (SELECT candidates FROM settings) THEN min(score) ELSE 0 END AS score
    FROM first_round
),
pool AS (
    SELECT lexeme, idf, df, query, row_number() OVER (ORDER BY df, lexeme COLLATE "C") AS i
    FROM (SELECT w.lexeme, w.idf, w.query, o.df FROM term_weights w JOIN ordered o USING (lexeme), queries
          WHERE queries.sampled OR NOT queries.informative @> w.query  -- @>: the word is an informative one
          ORDER BY o.df, w.lexeme COLLATE "C"
          LIMIT (SELECT other_terms FROM settings)) others
),
reaching AS (  -- sets of pool words, grown in pool order until their idf sum reaches the threshold
    WITH RECURSIVE sets (last, query, idf_sum, reached) AS (
        SELECT pool.i, pool.query, pool.idf,
               settings.tf_allowance * pool.idf >= threshold.score - 1e-6
               AND (pool.df <= settings.budget OR threshold.score <= 0)
        FROM pool, threshold, settings
        UNION ALL
        SELECT pool.i, sets.query && pool.query, sets.idf_sum + pool.idf,
               settings.tf_allowance * (sets.idf_sum + pool.idf) >= threshold.score - 1e-6
        FROM sets JOIN pool ON pool.i > sets.last, threshold, settings
        WHERE NOT sets.reached
    )
    SELECT string_agg('(' || query::text || ')', ' | ')::tsquery AS others FROM sets WHERE reached
),
second_candidates AS (
    SELECT chunk_id, search_vector FROM analyst.chunks, queries, reaching
    WHERE embedding IS NOT NULL AND search_vector @@ reaching.others
          AND (queries.sampled OR NOT search_vector @@ queries.informative)
    LIMIT (SELECT budget FROM settings)
),
second_round AS (
    SELECT chunk_id, words, score FROM (
        SELECT chunk_id, length(search_vector) AS words,
               (SELECT round(coalesce(sum(term_weights.idf * cardinality(held.positions) * 2.2
                                          / (cardinality(held.positions) + 1.2)), 0)::numeric, 9)
                FROM unnest(bounded.search_vector) held JOIN term_weights USING (lexeme)) AS score
        FROM (
            (SELECT chunk_id, search_vector FROM second_candidates
             ORDER BY (SELECT round(coalesce(sum(term_weights.idf), 0)::numeric, 9) FROM term_weights
                       WHERE second_candidates.search_vector @@ term_weights.query) DESC,
                      length(search_vector), chunk_id
             LIMIT (SELECT rescored FROM settings))
            UNION
            (SELECT chunk_id, search_vector FROM second_candidates
             ORDER BY (SELECT round(coalesce(sum(term_weights.idf), 0)::numeric, 9) FROM term_weights
                       WHERE second_candidates.search_vector @@ term_weights.query) DESC,
                      length(search_vector) DESC, chunk_id
             LIMIT (SELECT rescored / 4 FROM settings))
        ) bounded
    ) scored
    ORDER BY score DESC, words, chunk_id
    LIMIT (SELECT candidates FROM settings)
),
keyword AS (
    SELECT chunk_id, row_number() OVER (ORDER BY score DESC, words, chunk_id) AS rank
    FROM (SELECT * FROM first_round UNION SELECT * FROM second_round) both_rounds
    ORDER BY score DESC, words, chunk_id
    LIMIT (SELECT candidates FROM settings)
),
fused AS (
    SELECT chunk_id,
           coalesce(1.0 / (60 + semantic.rank), 0) + coalesce(1.0 / (60 + keyword.rank), 0) AS rrf_score,
           semantic.rank AS semantic_rank,
           keyword.rank AS keyword_rank
    FROM semantic FULL JOIN keyword USING (chunk_id)
)
SELECT f.chunk_id,
       c.twin,
       c.title,
       round((1 - (c.embedding <=> :'query_embedding'))::numeric, 4) AS similarity,
       round(f.rrf_score, 5) AS rrf_score,
       f.semantic_rank,
       f.keyword_rank
FROM fused f
JOIN analyst.chunks c USING (chunk_id)
ORDER BY f.rrf_score DESC, f.chunk_id
LIMIT :k;
