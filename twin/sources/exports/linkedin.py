"""LinkedIn data archives: each row of Shares.csv with text and a link is a post."""

from __future__ import annotations

import zipfile
from pathlib import PurePosixPath

from twin.documents import Category, RawDocument
from twin.sources.batch import SourceBatch
from twin.sources.exports.archive import Archive
from twin.sources.exports.csv_rows import csv_rows
from twin.sources.exports.pages import title_from_text
from twin.sources.text import decode_bytes, parse_date

SHARES_COLUMNS = ("Date", "ShareLink", "ShareCommentary")



def is_shares_csv(archive: Archive, info: zipfile.ZipInfo) -> bool:
    """A CSV whose header names ShareCommentary or ShareLink, whatever the file is called."""
    if not info.filename.lower().endswith(".csv"):
        return False
    if PurePosixPath(info.filename).name.lower() == "shares.csv":
        return True
    first_line = decode_bytes(archive.head(info))[0].split("\n", 1)[0].lower()
    return "sharecommentary" in first_line or "sharelink" in first_line



def read_linkedin(archive: Archive, batch: SourceBatch, author: str, base_url: str) -> None:
    for info in archive.members:
        if not is_shares_csv(archive, info):
            continue
        for where, row, raw in csv_rows(archive, info, batch, SHARES_COLUMNS):
            commentary = row["sharecommentary"]
            link = row["sharelink"].strip()
            if not commentary.strip():
                batch.reject(raw, f"{where}: ShareCommentary is empty (a repost without text?)")
                continue
            if not link:
                batch.reject(raw, f"{where}: ShareLink is empty, so the post has no url")
                continue
            try:
                published_at = parse_date(row["date"])
            except ValueError as exc:
                batch.reject(raw, f"{where}: {exc}")
                continue
            batch.add(RawDocument(
                author=author, category=Category.POST, platform="linkedin", url=link,
                title=title_from_text(commentary), content=commentary, published_at=published_at,
            ), where, item=raw, reason_prefix=f"{where}: ")

