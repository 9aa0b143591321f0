"""What every source delivers: documents and per-item rejections, stored by one function."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from twin.cleaning import clean
from twin.documents import RawDocument
from twin.raw_store import ImportSummary, Rejection, rejection, size_problem, store_documents


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
    readable_checked: bool = False  # the reader already refused documents that clean to nothing
    # (twin, url) -> where it first came; a reader of several files or collections passes one dict
    first_seen: dict[tuple[str, str], str] = field(default_factory=dict)

    def reject(self, item: str, reason: str, line_number: int | None = None) -> None:
        """Record a refused item; `line_number` defaults to the item's ordinal in the batch."""
        number = line_number if line_number is not None else len(self.rejections) + len(self.documents) + 1
        self.rejections.append(rejection(number, reason, item))

    def add(self, document: RawDocument, where: str, *, item: str | None = None, line_number: int | None = None,
            max_document_bytes: int | None = None, reason_prefix: str = "") -> bool:
        """Append a document under the rules every source shares; False when it was rejected.

        `where` names it for a later duplicate ("a.jsonl line 3", "Shares.csv line 4"); `item` is
        what a rejection keeps (default: the url), `reason_prefix` what its reason starts with. NUL characters, which PostgreSQL text cannot
        hold, are dropped; a document over `max_document_bytes` or a (twin, url) already added
        (here or through a shared `first_seen`) becomes a rejection naming why.
        """
        document = RawDocument(
            author=document.author, category=document.category, platform=document.platform,
            url=document.url.replace("\x00", ""), title=document.title.replace("\x00", ""),
            content=document.content.replace("\x00", ""), published_at=document.published_at,
        )
        kept = document.url if item is None else item
        if max_document_bytes is not None and (problem := size_problem(document.content, max_document_bytes)):
            self.reject(kept, reason_prefix + problem, line_number)
            return False
        earlier = self.first_seen.setdefault((document.twin, document.url), where)
        if earlier != where:
            self.reject(kept, f"{reason_prefix}duplicate url {document.url} (first at {earlier})", line_number)
            return False
        self.documents.append(document)
        return True

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


def store_batch(
    conn: psycopg.Connection, batch: SourceBatch, *, prune: bool = False, only_twin: str | None = None,
    max_document_bytes: int | None = None,
) -> ImportSummary:
    """Write a batch like any import: upsert by (twin, url), record rejections, optional prune
    (the rules every source shares are `store_documents`').

    A document that cleans to nothing (a page that is only chrome, say) becomes a rejection
    with that reason instead of a stored document that would clean to an empty one.
    """
    if not batch.readable_checked:
        refuse_unreadable(batch)
    return store_documents(conn, batch.source, batch.documents, batch.rejections, prune=prune,
                           only_twin=only_twin, max_document_bytes=max_document_bytes)


def refuse_unreadable(batch: SourceBatch) -> None:
    """Turn the batch's documents that clean to nothing into rejections naming why."""
    kept = []
    number = max((rejection.line_number for rejection in batch.rejections), default=0) + len(batch.documents)
    for doc in batch.documents:
        cleaned = clean(doc.category, doc.content, title=doc.title, author=doc.author)
        if cleaned.text:
            kept.append(doc)
            continue
        number += 1
        batch.rejections.append(rejection(number, f"{doc.url}: content {cleaned.reason_empty()}", doc.url))
    batch.documents = kept
    batch.readable_checked = True
