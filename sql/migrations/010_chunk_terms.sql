-- Issue 13: the keyword leg of retrieval ranks only a question's informative words, so it needs
-- each word's document frequency: how many of a twin's chunks contain each lexeme of
-- chunks.search_vector. Kept by the feature pipeline (twin/retrieval.py: refresh_chunk_terms,
-- after a chunk step that changed rows); read by twin/retrieval.py and sql/analyst/hybrid_search.sql.
CREATE TABLE chunk_terms (
    lexeme  text NOT NULL,
    twin    text NOT NULL REFERENCES twins (slug) ON DELETE CASCADE,
    chunks  integer NOT NULL CHECK (chunks > 0),
    PRIMARY KEY (lexeme, twin)
);

INSERT INTO chunk_terms (lexeme, twin, chunks)
SELECT s.word, t.slug, s.ndoc
FROM twins t, LATERAL ts_stat(format('SELECT search_vector FROM chunks WHERE twin = %L', t.slug)) s;

CREATE VIEW analyst.chunk_terms AS SELECT lexeme, twin, chunks FROM chunk_terms;
COMMENT ON VIEW analyst.chunk_terms IS
    'Document frequency of each lexeme of chunks.search_vector, per twin (for keyword ranking).';
GRANT SELECT ON analyst.chunk_terms TO twin_analyst;
