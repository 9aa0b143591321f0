"""What every source delivers: documents and per-item rejections, stored by one function."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from twin.documents import RawDocument
from twin.raw_store import ImportSummary, Rejection, store_documents


KEPT_ITEM_CHARS = 2_000


@dataclass
class SourceBatch:
    """One source's delivery for one twin.

    `source` is a stable id of where it came from (a URL, an absolute path, `s3://bucket/key`,
    `mongodb://host/db`); re-reading the same source gives the same id. Each rejection names the
    item (`line` = its url, zip entry, file path or CSV row) and the reason; `line_number` is the
    item's 1-based ordinal within the source.
    """

    source: str
    documents: list[RawDocument] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # passed over on purpose, by reason

    def reject(self, item: str, reason: str) -> None:
        # items land in a text column: no NUL bytes, bounded size
        kept = item if len(item) <= KEPT_ITEM_CHARS else item[:KEPT_ITEM_CHARS] + " …[truncated]"
        self.rejections.append(Rejection(len(self.rejections) + len(self.documents) + 1,
                                         reason.replace("\x00", "\\x00"), kept.replace("\x00", "\\x00")))

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


def store_batch(
    conn: psycopg.Connection, batch: SourceBatch, *, prune: bool = False, only_twin: str | None = None,
    max_document_bytes: int | None = None,
) -> ImportSummary:
    """Write a batch like any import: upsert by (twin, url), record rejections, optional prune
    (the rules every source shares are `store_documents`')."""
    return store_documents(conn, batch.source, batch.documents, batch.rejections, prune=prune,
                           only_twin=only_twin, max_document_bytes=max_document_bytes)
