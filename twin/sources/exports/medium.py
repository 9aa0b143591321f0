"""Medium exports: each posts/*.html page (drafts skipped) is an article with its canonical link."""

from __future__ import annotations

from pathlib import PurePosixPath

from twin.documents import Category, RawDocument
from twin.markup import inline_text
from twin.sources.batch import SourceBatch
from twin.sources.exports.archive import Archive, MemberError
from twin.sources.exports.pages import is_post_page, page_text, parse_html
from twin.sources.text import parse_date


def read_medium(archive: Archive, batch: SourceBatch, author: str, base_url: str) -> None:
    for info in sorted(archive.members, key=lambda member: member.filename):
        if not is_post_page(info.filename):
            continue
        if PurePosixPath(info.filename).name.startswith("draft_"):
            batch.skip("draft")
            continue
        try:
            page = parse_html(archive, info)
            title_tag = page.select_one("h1.p-name") or page.find("title")
            title = inline_text(title_tag) if title_tag else ""
            body = page.select_one('section[data-field="body"]') or page.select_one(".e-content")
            content = page_text(info, body, drop_heading=title) if body is not None else ""
        except MemberError as exc:
            batch.reject(info.filename, str(exc))
            continue
        canonical = page.select_one("a.p-canonical")
        href = str(canonical.get("href") or "").strip() if canonical else ""
        if body is None:
            batch.reject(info.filename, f'{info.filename}: no body (<section data-field="body">)')
            continue
        if not href:
            batch.reject(info.filename, f'{info.filename}: no canonical link (<a class="p-canonical" href=...>)')
            continue
        if not content:
            batch.reject(info.filename, f"{info.filename}: the post body is empty")
            continue
        published = page.select_one("time.dt-published")
        try:
            published_at = parse_date(str(published.get("datetime") or "") if published else "")
        except ValueError as exc:
            batch.reject(info.filename, f"{info.filename}: {exc}")
            continue
        batch.add(RawDocument(
            author=author, category=Category.ARTICLE, platform="medium", url=href, title=title,
            content=content, published_at=published_at,
        ), info.filename, item=info.filename, reason_prefix=f"{info.filename}: ")

