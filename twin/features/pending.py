"""What "still to do" means for each feature step, stated once.

The conditions are SQL over `raw_documents r LEFT JOIN cleaned_documents c`, `cleaned_documents c`
and `chunks`; the steps, `features_pending` (raw/documents' "nothing new" skip) and twin/lag.py
all use them, so a rule cannot drift between the step and the code that decides to skip it.
"""

from __future__ import annotations

import psycopg

from twin import cleaning  # CLEANER_VERSION read at call time, as the cleaning step reads it
from twin.features.step import count_rows

# Raw documents not cleaned as they are now, or cleaned by another version of the rules. The
# cleaning step also re-cleans a document when the repeated lines of its site change (the part of
# `cleaner` after '+'), which only a full pass can see; this is everything a query can see.
UNCLEANED = """(c.document_id IS NULL OR c.raw_hash <> r.content_hash
                OR split_part(c.cleaner, '+', 1) <> %(version)s)"""
# Cleaned rows whose raw document is gone: the cleaning step deletes them.
ORPHANED = "NOT EXISTS (SELECT 1 FROM raw_documents r WHERE r.id = c.document_id)"
# Cleaned documents without chunks of their current text by this chunker:
UNCHUNKED = """NOT EXISTS (SELECT 1 FROM chunks k WHERE k.document_id = c.document_id
    AND k.document_hash = c.content_hash AND k.chunker = %(chunker)s)"""
# Chunks without a vector from this model:
UNEMBEDDED = "(embedding IS NULL OR embedding_model IS DISTINCT FROM %(model)s)"

TWIN_UNCHUNKED = f"c.twin = %(twin)s AND {UNCHUNKED}"
TWIN_UNEMBEDDED = f"twin = %(twin)s AND {UNEMBEDDED}"


def cleaning_pending(conn: psycopg.Connection, twin: str) -> int:
    """Raw documents of `twin` not cleaned as they are now or by these rules, plus rows to delete."""
    return count_rows(
        conn,
        f"""SELECT (SELECT count(*) FROM raw_documents r LEFT JOIN cleaned_documents c ON c.document_id = r.id
                    WHERE r.twin = %(twin)s AND {UNCLEANED})
                 + (SELECT count(*) FROM cleaned_documents c WHERE c.twin = %(twin)s AND {ORPHANED})""",
        {"twin": twin, "version": cleaning.CLEANER_VERSION},
    )


def features_pending(conn: psycopg.Connection, twin: str, model_id: str, chunker: str) -> int:
    """Work any feature step of `twin` still has: documents to clean, cleaned documents to chunk
    (with `chunker`), chunks to embed (with `model_id`). 0 means a run would change nothing."""
    return cleaning_pending(conn, twin) + count_rows(
        conn,
        f"""SELECT (SELECT count(*) FROM cleaned_documents c WHERE {TWIN_UNCHUNKED})
                 + (SELECT count(*) FROM chunks WHERE {TWIN_UNEMBEDDED})""",
        {"twin": twin, "chunker": chunker, "model": model_id},
    )
