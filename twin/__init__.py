"""LLM Twin domain logic: documents, cleaning, chunking, embedding, storage and search.

Nothing in this package imports Dagster, so training and serving reuse it unchanged.
"""
