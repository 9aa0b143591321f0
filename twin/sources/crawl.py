"""The `crawl` entry point: one article page, a profile/archive page or an RSS/Atom feed in, a
SourceBatch of articles out; every page that fails becomes a rejection with its reason, and
nothing raises. Fetching lives in `fetcher.py`, extraction and link discovery in `articles.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from bs4 import BeautifulSoup

from twin.documents import twin_slug
from twin.sources.articles import (
    ArticleLink,
    ExtractionError,
    advertised_feed_url,
    discover_article_links,
    extract_article,
    next_listing_url,
    page_is_listing,
    parse_html,
)
from twin.sources.batch import SourceBatch
from twin.sources.feeds import feed_links, is_feed
from twin.sources.fetcher import CrawlSettings, Fetcher, FetchError, Page
from twin.sources.http_cache import HttpCache

MAX_LISTING_PAGES = 20  # pages of one archive followed through rel="next"
STAT_KEYS = ("fetched", "not_modified", "rejected", "robots_blocked", "documents")


def crawl(
    conn: psycopg.Connection,
    url: str,
    author: str,
    *,
    settings: CrawlSettings | None = None,
    max_pages: int = 100,
    stats: dict[str, int] | None = None,
) -> SourceBatch:
    """Articles of `author` from an article page, a profile/archive page or an RSS/Atom feed.

    Pages unchanged since the last stored crawl (304) are skipped; `stats`, when given, is filled
    with fetched / not_modified / rejected / robots_blocked / documents counts.
    """
    counts = stats if stats is not None else {}
    counts.update(dict.fromkeys(STAT_KEYS, 0))
    batch = SourceBatch(source=url)
    with Fetcher(settings or CrawlSettings()) as fetcher:
        _Crawl(fetcher, HttpCache(conn), batch, author, counts, max_pages).run(url)
    counts["rejected"] = len(batch.rejections)
    counts["documents"] = len(batch.documents)
    return batch


@dataclass
class _Crawl:
    fetcher: Fetcher
    cache: HttpCache
    batch: SourceBatch
    author: str
    counts: dict[str, int]
    max_pages: int
    _requested: set[str] = field(default_factory=set)
    _document_urls: dict[str, str] = field(default_factory=dict)

    def run(self, start_url: str) -> None:
        page = self._fetch(start_url)
        if page is None:
            return
        if is_feed(page.content_type, page.text):
            self.cache.record(start_url, page.status, etag=page.etag, last_modified=page.last_modified,
                              content_hash=page.body_hash)
            try:
                links = feed_links(page.body, page.text, page.url)
            except ExtractionError as exc:
                self.batch.reject(start_url, exc.reason)
                return
            self._crawl_links(start_url, links, "the feed has no items with a link")
            return
        soup = parse_html(page.text)
        if not page_is_listing(soup, page.url):
            self._add_article(start_url, page, None, soup)
            return
        self.cache.record(start_url, page.status, etag=page.etag, last_modified=page.last_modified,
                          content_hash=page.body_hash)
        links = self._listing_links(page, soup)
        feed_url = advertised_feed_url(soup, page.url)
        if not links and feed_url and feed_url not in self._requested:
            links = self._advertised_feed_links(feed_url)  # archives rendered by JavaScript list nothing
        self._crawl_links(start_url, links, "no article links found on this profile/archive page")

    def _advertised_feed_links(self, feed_url: str) -> list[ArticleLink]:
        feed = self._fetch(feed_url)
        if feed is None:
            return []
        self.cache.record(feed_url, feed.status, content_hash=feed.body_hash)
        try:
            return feed_links(feed.body, feed.text, feed.url)
        except ExtractionError as exc:
            self.batch.reject(feed_url, exc.reason)
            return []

    def _listing_links(self, page: Page, soup: BeautifulSoup) -> list[ArticleLink]:
        """Article links of an archive and of the pages its rel="next" links lead to."""
        links = discover_article_links(soup, page.url)
        listing_pages = 1
        next_url = next_listing_url(soup, page.url)
        while next_url and len(links) < self.max_pages and listing_pages < MAX_LISTING_PAGES:
            if next_url in self._requested:
                break
            next_page = self._fetch(next_url)
            if next_page is None:
                break
            self.cache.record(next_url, next_page.status, content_hash=next_page.body_hash)
            listing_pages += 1
            next_soup = parse_html(next_page.text)
            known = {link.url for link in links}
            links += [link for link in discover_article_links(next_soup, next_page.url)
                      if link.url not in known]
            next_url = next_listing_url(next_soup, next_page.url)
        return links

    def _crawl_links(self, start_url: str, links: list[ArticleLink], none_found: str) -> None:
        links = [link for link in links if link.url not in self._requested]
        if not links:
            self.batch.reject(start_url, none_found)
            return
        for link in links[: self.max_pages]:
            if link.url in self._requested:
                continue
            page = self._fetch(link.url)
            if page is not None:
                self._add_article(link.url, page, link, None)

    def _fetch(self, url: str) -> Page | None:
        """The page, or None after recording a 304 skip or a rejection."""
        self._requested.add(url)
        try:
            page = self.fetcher.get(url, self.cache.validators(url, twin_slug(self.author)))
        except FetchError as exc:
            if exc.status is not None:
                self.cache.record(url, exc.status)
            self.counts["robots_blocked"] += exc.robots
            self.batch.reject(url, exc.reason)
            return None
        if page is None:
            self.cache.record_not_modified(url)
            self.counts["not_modified"] += 1
            return None
        self.counts["fetched"] += 1
        return page

    def _add_article(self, requested_url: str, page: Page, link: ArticleLink | None,
                     soup: BeautifulSoup | None) -> None:
        content_hash = page.body_hash
        try:
            if is_feed(page.content_type, page.text):
                raise ExtractionError("expected an article page but got a feed")
            document = extract_article(page.text, page.url, self.author, link=link, soup=soup)
        except ExtractionError as exc:
            self.batch.reject(requested_url, exc.reason)
        else:
            first = self._document_urls.setdefault(document.url, requested_url)
            if first != requested_url:
                self.batch.reject(requested_url, f"same article as {first} (canonical url {document.url})")
            else:
                self.batch.documents.append(document)
                content_hash = document.content_hash
        self.cache.record(requested_url, page.status, etag=page.etag, last_modified=page.last_modified,
                          content_hash=content_hash)
