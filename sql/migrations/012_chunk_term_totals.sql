-- Issue 13: the keyword leg weights each of a question's words by its inverse document frequency,
-- idf = ln(1 + (N - df + 0.5) / (df + 0.5)), which needs N, the number of chunks the frequencies
-- were counted over: one row per twin, kept with chunk_terms (twin/keyword_search.py:
-- refresh_chunk_terms); read by twin/keyword_search.py and sql/analyst/hybrid_search.sql.
CREATE TABLE chunk_term_totals (
    twin    text PRIMARY KEY REFERENCES twins (slug) ON DELETE CASCADE,
    chunks  integer NOT NULL CHECK (chunks >= 0)
);

INSERT INTO chunk_term_totals (twin, chunks)
SELECT twin, count(*) FROM chunks GROUP BY twin;

CREATE VIEW analyst.chunk_term_totals AS SELECT twin, chunks FROM chunk_term_totals;
COMMENT ON VIEW analyst.chunk_term_totals IS
    'How many chunks of each twin analyst.chunk_terms counted (N of the keyword ranking''s idf).';
GRANT SELECT ON analyst.chunk_term_totals TO twin_analyst;
