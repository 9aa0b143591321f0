"""The cleaning step: raw_documents -> cleaned_documents for one twin, and what it removed."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from twin import cleaning  # its rules and version read at call time: one source, seen by every step
from twin.cleaning import SAMPLE_LINES, clean_title, detector_lines, repeated_lines
from twin.documents import Category, content_hash
from twin.features.pending import ORPHANED, cleaning_pending
from twin.features.step import StepCounts, count_rows, lock_twin_step


def clean_documents(conn: psycopg.Connection, twin: str) -> StepCounts:
    """Bring cleaned_documents in line with raw_documents for `twin` and the cleaning rules.

    A document is cleaned again when its raw content, the cleaner version or the repeated lines
    found on its site changed; its cleaned hash (and so its chunks and vectors) changes only when
    its cleaned text does. `details` counts removed chrome lines by family; `notes` holds the most
    common removed lines and the documents refused for being only chrome.
    """
    counts = StepCounts()
    with conn.transaction():
        lock_twin_step(conn, "clean", twin)
        if not cleaning_pending(conn, twin):
            # nothing the cleaning depends on changed, so neither can its repeated lines
            counts.unchanged = count_rows(conn, "SELECT count(*) FROM raw_documents WHERE twin = %s", twin)
            return counts
        counts.deleted = len(conn.execute(
            f"DELETE FROM cleaned_documents c WHERE c.twin = %s AND {ORPHANED} RETURNING document_id", (twin,),
        ).fetchall())
        rows = conn.execute(
            """SELECT r.id, r.category, r.platform, r.url, r.title, r.author, r.published_at,
                      r.content, r.content_hash, c.content_hash, c.raw_hash, c.cleaner
               FROM raw_documents r LEFT JOIN cleaned_documents c ON c.document_id = r.id
               WHERE r.twin = %s ORDER BY r.id""",
            (twin,),
        ).fetchall()
        first_pass = {row[0]: cleaning.clean(Category(row[1]), row[7], title=row[4], author=row[5]) for row in rows}
        sites: dict[str, list[set[str]]] = {}
        for row in rows:
            if Category(row[1]) is not Category.REPOSITORY:
                sites.setdefault(site_of(row[3]), []).append(detector_lines(first_pass[row[0]].text))
        repeated = {site: repeated_lines(documents) for site, documents in sites.items()}
        removed: Counter[str] = Counter()
        samples: Counter[str] = Counter()
        refused: list[str] = []
        for (doc_id, category, platform, url, title, author, published_at, raw_content, raw_hash,
             previous_hash, previous_raw_hash, previous_cleaner) in rows:
            site_lines = repeated.get(site_of(url), frozenset()) if category != Category.REPOSITORY else frozenset()
            cleaner = cleaner_signature(site_lines)
            # UNCLEANED (twin/features/pending.py) plus what only this pass sees: the site's repeated lines
            if previous_hash is not None and previous_raw_hash == raw_hash and previous_cleaner == cleaner:
                counts.unchanged += 1
                continue
            cleaned = first_pass[doc_id]
            if site_lines:
                cleaned = cleaning.clean(Category(category), raw_content, title=title, author=author, repeated=site_lines)
            if not cleaned.text:
                counts.skipped += 1
                refused.append(f"refused {url}: content {cleaned.reason_empty()}")
                conn.execute("DELETE FROM cleaned_documents WHERE document_id = %s", (doc_id,))
                continue
            removed.update(cleaned.removed)
            samples.update(cleaned.samples)
            text = cleaned.text
            title = clean_title(title) or _title_from(text, url)
            new_hash = content_hash(category, platform, url, title, author, published_at, text)
            record = Jsonb({"lines": dict(sorted(cleaned.removed.items())), "samples": cleaned.samples})
            conn.execute(
                """INSERT INTO cleaned_documents
                       (document_id, twin, category, platform, url, title, author, published_at,
                        content, content_hash, raw_hash, cleaner, removed)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (document_id) DO UPDATE SET
                       category = EXCLUDED.category, platform = EXCLUDED.platform,
                       url = EXCLUDED.url, title = EXCLUDED.title, author = EXCLUDED.author,
                       published_at = EXCLUDED.published_at, content = EXCLUDED.content,
                       content_hash = EXCLUDED.content_hash, raw_hash = EXCLUDED.raw_hash,
                       cleaner = EXCLUDED.cleaner, removed = EXCLUDED.removed, cleaned_at = now()""",
                (doc_id, twin, category, platform, url, title, author, published_at, text, new_hash,
                 raw_hash, cleaner, record),
            )
            if previous_hash is None:
                counts.new += 1
            elif previous_hash != new_hash:
                counts.changed += 1
            else:
                counts.unchanged += 1
        counts.details = {f"removed_{family}_lines": count for family, count in sorted(removed.items())}
        counts.notes = [f"{count}x {line}" for line, count in samples.most_common(SAMPLE_LINES)] + refused
    return counts


def cleaner_signature(repeated: frozenset[str]) -> str:
    """The cleaner version plus a fingerprint of the repeated lines its site's documents lose."""
    if not repeated:
        return cleaning.CLEANER_VERSION
    return f"{cleaning.CLEANER_VERSION}+{content_hash(*sorted(repeated))[:12]}"


def site_of(url: str) -> str:
    """The site a document comes from (host without `www.`): the repeated-line detector's group."""
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.") or url.split("/", 1)[0]


def chrome_summary(conn: psycopg.Connection, twin: str) -> dict[str, int]:
    """What cleaning removed across the twin's cleaned documents: documents and chrome lines."""
    documents, with_chrome, lines = conn.execute(
        """SELECT count(*), count(*) FILTER (WHERE n.lines > 0), coalesce(sum(n.lines), 0)
           FROM cleaned_documents c
           LEFT JOIN LATERAL (SELECT sum(value::int) AS lines FROM jsonb_each_text(c.removed->'lines')) n ON true
           WHERE c.twin = %s""",
        (twin,),
    ).fetchone()
    return {"documents": documents, "documents_with_chrome": with_chrome, "chrome_lines_removed": int(lines)}


def chrome_by_family(conn: psycopg.Connection, twin: str) -> dict[str, int]:
    """Removed chrome lines of the twin's cleaned documents per family, most first."""
    rows = conn.execute(
        """SELECT key, sum(value::int) AS lines FROM cleaned_documents c, jsonb_each_text(c.removed->'lines')
           WHERE c.twin = %s GROUP BY key ORDER BY lines DESC, key""",
        (twin,),
    ).fetchall()
    return {family: int(lines) for family, lines in rows}


def _title_from(text: str, url: str) -> str:
    """A document without a title is named by its first line (or its url)."""
    first_line = text.strip().split("\n", 1)[0].lstrip("# ").strip()
    return first_line[:120] or url
