"""Substack exports: each published row of posts.csv with its posts/<id>.html page is an article."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import quote

from twin.documents import Category, RawDocument
from twin.sources.batch import SourceBatch
from twin.sources.exports.archive import Archive, MemberError
from twin.sources.exports.csv_rows import csv_rows
from twin.sources.exports.pages import page_text, parse_html
from twin.sources.text import parse_date

SUBSTACK_COLUMNS = ("post_id", "post_date", "is_published", "title")



def read_substack(archive: Archive, batch: SourceBatch, author: str, base_url: str) -> None:
    posts_csv = min((info for info in archive.members if PurePosixPath(info.filename).name.lower() == "posts.csv"),
                    key=lambda info: len(info.filename))
    prefix = str(PurePosixPath(posts_csv.filename).parent).removeprefix(".")
    pages = {info.filename: info for info in archive.members}
    for where, row, raw in csv_rows(archive, posts_csv, batch, SUBSTACK_COLUMNS):
        post_id = row["post_id"].strip()
        if row["is_published"].strip().lower() not in ("true", "t", "1", "yes"):
            batch.skip("unpublished")
            continue
        slug = post_id.split(".", 1)[1] if "." in post_id else ""
        if not slug:
            batch.reject(raw, f"{where}: post_id {post_id!r} has no slug (expected <number>.<slug>)")
            continue
        page_name = f"{prefix}/posts/{post_id}.html".lstrip("/")
        page = pages.get(page_name)
        if page is None:
            batch.reject(raw, f"{where}: {page_name} is missing from the archive")
            continue
        try:
            content = page_text(page, parse_html(archive, page))
        except MemberError as exc:
            batch.reject(page_name, str(exc))
            continue
        if not content:
            batch.reject(raw, f"{where}: {page_name} has no text")
            continue
        try:
            published_at = parse_date(row["post_date"])
        except ValueError as exc:
            batch.reject(raw, f"{where}: {exc}")
            continue
        batch.add(RawDocument(
            author=author, category=Category.ARTICLE, platform="substack",
            url=f"{base_url}/p/{quote(slug)}", title=row["title"].strip(), content=content,
            published_at=published_at,
        ), where, item=raw, reason_prefix=f"{where}: ")

