-- Issue 13: searches scan the HNSW index with ef_search 150 (twin/retrieval.py HNSW_EF_SEARCH and
-- the analyst SQL files). Measured by bench/retrieval.py at 1M chunks x 384 (docs/benchmarks.md,
-- Retrieval (b)): recall@10 against exact search is 0.948-0.9525 at ef_search 100 and 0.9625 at 150,
-- whose p50 is 5.5 ms once the index is in shared_buffers. analyst.similar_chunks (migration 005)
-- sets its own.
ALTER FUNCTION analyst.similar_chunks(uuid, integer) SET hnsw.ef_search = 150;
