"""The feature pipeline for one twin: raw -> cleaned -> chunks -> embeddings, incrementally.

Each step compares content hashes with what it wrote last time and touches only what changed;
each returns counts for the run's metadata. Every write is a transaction, so a run that dies
midway leaves the tables as they were (or, for embeddings, with the finished batches kept).
One module per step (cleaned, chunks, embeddings, each with its checks), the pending rules they
share in pending.py; the steps are importable from here, as the pipeline's API.
"""

from twin.features.chunks import chunk_documents
from twin.features.cleaned import chrome_by_family, chrome_summary, clean_documents
from twin.features.embeddings import embed_chunks
from twin.features.pending import cleaning_pending, features_pending
from twin.features.step import StepCounts

__all__ = ["StepCounts", "chrome_by_family", "chrome_summary", "chunk_documents", "clean_documents",
           "cleaning_pending", "embed_chunks", "features_pending"]
