"""Crawling public pages over plain HTTP: polite fetching, conditional GET and the `crawl` entry point.

`crawl` takes one article page, a profile/archive page or an RSS/Atom feed and returns a SourceBatch
of articles; every page that fails becomes a rejection with its reason, and nothing raises.
Extraction and link discovery live in `twin/sources/articles.py`.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import urljoin, urlsplit

import psycopg
import requests
import urllib3
from bs4 import BeautifulSoup

from twin.documents import twin_slug
from twin.sources.articles import (
    ArticleLink,
    ExtractionError,
    advertised_feed_url,
    discover_article_links,
    extract_article,
    feed_links,
    is_feed,
    next_listing_url,
    page_is_listing,
    parse_html,
)
from twin.sources.batch import SourceBatch
from twin.sources.robots import RobotsRules
from twin.sources.text import decode_bytes

DEFAULT_USER_AGENT = "twin-crawler/0.1 (+https://github.com/llm-twin-platform)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml",
                        "application/xml", "text/xml"})
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: crawlers must read at least 500 KiB of robots.txt
MAX_LISTING_PAGES = 20  # pages of one archive followed through rel="next"
STAT_KEYS = ("fetched", "not_modified", "rejected", "robots_blocked", "documents")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = ("text/html,application/xhtml+xml,application/rss+xml,application/atom+xml,"
           "application/xml;q=0.9,*/*;q=0.5")


@dataclass(frozen=True)
class CrawlSettings:
    """How politely and how far the crawler fetches; 0 for `per_host_delay_s` disables the limit."""

    user_agent: str = DEFAULT_USER_AGENT
    timeout_s: float = 10.0  # to connect, and for each attempt's whole answer, body included
    page_deadline_s: float = 30.0  # one page in all: every attempt, retry wait and redirect
    max_bytes: int = 2_000_000
    per_host_delay_s: float = 1.0
    retries: int = 3
    backoff_s: float = 0.5
    max_retry_after_s: float = 30.0
    max_redirects: int = 5
    respect_robots: bool = True


@dataclass(frozen=True)
class Validators:
    """What a conditional GET sends back: the stored ETag and Last-Modified of a URL."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class Page:
    """A downloaded page: final URL after redirects, media type, raw bytes and decoded text."""

    url: str
    status: int
    content_type: str
    body: bytes
    text: str
    encoding: str
    etag: str | None = None
    last_modified: str | None = None

    @property
    def body_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class FetchError(Exception):
    """A URL that could not be fetched; `reason` is what the rejection says."""

    def __init__(self, reason: str, status: int | None = None, *, robots: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.robots = robots


class _Transient(Exception):
    """A failure worth retrying: timeout or connection error."""


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: requests.structures.CaseInsensitiveDict[str]
    body: bytes | None


# ----------------------------------------------------------------------------------------------
# Politeness: per-host rate limit and robots.txt


class HostRateLimiter:
    """Keeps at least `delay_s` between the end of one request to a host and the start of the next."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._last_done: dict[str, float] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def slot(self, host: str, delay_s: float) -> Iterator[None]:
        """Hold the host for one request; waits first when the last one ended under `delay_s` ago."""
        if delay_s <= 0:  # the limit is off: no lock, no sleep, only remember when we were there
            try:
                yield
            finally:
                self._last_done[host] = self._clock()
            return
        with self._guard:
            lock = self._host_locks.setdefault(host, threading.Lock())
        with lock:
            # measured from the end of the previous response, so the server sees the full gap
            while (remaining := self._last_done.get(host, float("-inf")) + delay_s - self._clock()) > 0:
                self._sleep(remaining)
            try:
                yield
            finally:
                self._last_done[host] = self._clock()


# one per process, so separate crawls of the same host in one process stay polite together
SHARED_RATE_LIMITER = HostRateLimiter()


# ----------------------------------------------------------------------------------------------
# Fetching


class Fetcher:
    """GETs pages with robots.txt, a per-host rate limit, retries, a size cap and redirects."""

    def __init__(self, settings: CrawlSettings, *, limiter: HostRateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._limiter = limiter if limiter is not None else SHARED_RATE_LIMITER
        self._sleep = sleep
        self._clock = clock
        self._robots: dict[str, RobotsRules] = {}
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": settings.user_agent, "Accept": _ACCEPT})

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def get(self, url: str, validators: Validators | None = None) -> Page | None:
        """The page at `url`, or None when the server answered 304 Not Modified; FetchError otherwise."""
        _require_http_url(url)
        chain = [url]
        current = url
        deadline = self._clock() + self.settings.page_deadline_s
        while True:
            self._check_robots(current)
            reply = self._with_retries(current, validators, deadline=deadline)
            if reply.status in _REDIRECTS:
                location = reply.headers.get("Location")
                if not location:
                    raise FetchError(f"HTTP {reply.status} redirect without a Location header", reply.status)
                current = urljoin(current, location.strip()).split("#", 1)[0]
                chain.append(current)
                if len(chain) - 1 > self.settings.max_redirects:
                    hops = " -> ".join(chain)
                    raise FetchError(f"too many redirects (more than {self.settings.max_redirects}): {hops}",
                                     reply.status)
                if urlsplit(current).scheme not in ("http", "https"):
                    raise FetchError(f"redirected to {current}, which is not an http(s) URL", reply.status)
                continue
            if reply.status == 304:
                return None
            if reply.status >= 300:
                raise FetchError(f"HTTP {reply.status} {_phrase(reply.status)}".rstrip(), reply.status)
            assert reply.body is not None
            media_type, charset = _content_type(reply.headers.get("Content-Type"))
            if not reply.body:
                raise FetchError(f"empty body: HTTP {reply.status} with no content", reply.status)
            text, encoding = decode_bytes(reply.body, charset)
            return Page(url=current, status=reply.status, content_type=media_type, body=reply.body,
                        text=text, encoding=encoding, etag=reply.headers.get("ETag"),
                        last_modified=reply.headers.get("Last-Modified"))

    def _check_robots(self, url: str) -> None:
        if not self.settings.respect_robots:
            return
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        rules = self._robots.get(origin)
        if rules is None:
            rules = self._robots[origin] = self._load_robots(origin)
        if rules.unreachable is not None:
            raise FetchError(f"robots.txt of {origin} could not be read ({rules.unreachable}), so the host "
                             "is not crawled", robots=True)
        if not rules.allows(url):
            raise FetchError("blocked by robots.txt", robots=True)

    def _load_robots(self, origin: str) -> RobotsRules:
        url = f"{origin}/robots.txt"
        try:
            for _ in range(self.settings.max_redirects + 1):
                reply = self._with_retries(url, None, robots=True)
                if reply.status in _REDIRECTS and reply.headers.get("Location"):
                    url = urljoin(url, reply.headers["Location"])
                    continue
                break
            else:
                return RobotsRules(unreachable="too many redirects")
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                return RobotsRules()  # RFC 9309: a missing robots.txt allows everything
            return RobotsRules(unreachable=exc.reason)
        if reply.status == 200 and reply.body is not None:
            return RobotsRules.parse(reply.body.decode("utf-8", errors="replace"), self.settings.user_agent)
        if 400 <= reply.status < 500:
            return RobotsRules()
        return RobotsRules(unreachable=f"HTTP {reply.status} {_phrase(reply.status)}".rstrip())

    def _with_retries(self, url: str, validators: Validators | None, *, robots: bool = False,
                      deadline: float | None = None) -> _Reply:
        attempts = self.settings.retries + 1
        deadline = deadline if deadline is not None else self._clock() + self.settings.page_deadline_s
        for attempt in range(1, attempts + 1):
            tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
            try:
                reply = self._exchange(url, validators, robots=robots, deadline=deadline)
            except _Transient as exc:
                if attempt == attempts:
                    raise FetchError(f"{exc} ({tries})") from None
                if self._clock() + self._backoff(attempt) >= deadline:
                    raise FetchError(f"{exc} ({tries}; no time left for another within the page's "
                                     f"{self.settings.page_deadline_s:g} s deadline)") from None
                self._sleep(self._backoff(attempt))
                continue
            if reply.status == 429 or 500 <= reply.status < 600:
                failure = f"HTTP {reply.status} {_phrase(reply.status)}".rstrip()
                if attempt == attempts:
                    raise FetchError(f"{failure} ({tries})", reply.status)
                wait = _retry_after(reply.headers.get("Retry-After"))
                if wait is not None and wait > self.settings.max_retry_after_s:
                    raise FetchError(f"{failure}: the server asked to retry after {wait:g} s, over the "
                                     f"{self.settings.max_retry_after_s:g} s cap", reply.status)
                self._sleep(wait if wait is not None else self._backoff(attempt))
                continue
            return reply
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        return self.settings.backoff_s * 2 ** (attempt - 1)

    def _exchange(self, url: str, validators: Validators | None, *, robots: bool, deadline: float) -> _Reply:
        """One request (one rate-limit slot); the body is read only for a 2xx answer.

        Pages must be HTML or a feed and fit the size cap; robots.txt may be anything and is cut
        at 500 KiB.
        """
        headers = {}
        if validators is not None and validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators is not None and validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        timeout = self.settings.timeout_s
        with self._limiter.slot(urlsplit(url).netloc.lower(), self.settings.per_host_delay_s):
            started = self._clock()
            try:
                response = self._session.get(url, headers=headers, stream=True, allow_redirects=False,
                                             timeout=(timeout, timeout))
            except requests.Timeout:
                raise _Transient(f"timed out after {timeout:g} s") from None
            except requests.RequestException as exc:
                raise _Transient(f"connection failed: {_network_error(exc)}") from None
            with response:
                if not 200 <= response.status_code < 300:
                    return _Reply(response.status_code, response.headers, None)
                if not robots:
                    _require_html_or_feed(response)
                body = self._read_body(response, ROBOTS_MAX_BYTES if robots else self.settings.max_bytes,
                                       deadline=min(started + timeout, deadline), cut=robots)
                return _Reply(response.status_code, response.headers, body)

    def _read_body(self, response: requests.Response, max_bytes: int, *, deadline: float, cut: bool) -> bytes:
        """The body, streamed; past `max_bytes` it is cut (`cut`) or refused."""
        cap = f"page is over the {_megabytes(max_bytes)} cap"
        declared = response.headers.get("Content-Length", "")
        if not cut and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"{cap} (Content-Length {int(declared):,} bytes)", response.status_code)
        chunks: list[bytes] = []
        size = 0
        for chunk in _chunks_until(response, deadline, self._clock, self.settings.timeout_s):
            size += len(chunk)
            if size > max_bytes and cut:
                chunks.append(chunk[: max_bytes - size])
                break
            if size > max_bytes:
                raise FetchError(cap, response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)


def _chunks_until(response: requests.Response, deadline: float, clock: Callable[[], float],
                  timeout_s: float) -> Iterator[bytes]:
    """The decoded body as it arrives: each read returns what one receive got (`read1`), with the
    socket timeout cut to the time left, so a server dripping a long body hits the deadline
    instead of filling a 64 KiB read for minutes."""
    raw = response.raw
    late = f"timed out after {timeout_s:g} s reading the page"
    while True:
        left = deadline - clock()
        if left <= 0:
            raise _Transient(late)
        _set_read_timeout(raw, left)
        try:
            chunk = raw.read1(65536, decode_content=True)
        except (TimeoutError, urllib3.exceptions.TimeoutError):
            raise _Transient(late) from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise _Transient(f"connection broke while reading the page: {_network_error(exc)}") from None
        if not chunk:  # read1 blocks until data or the end of the body
            return
        yield chunk


def _set_read_timeout(raw: object, seconds: float) -> None:
    connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(0.05, seconds))


def _require_http_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL")


def _require_html_or_feed(response: requests.Response) -> None:
    header = response.headers.get("Content-Type")
    media_type, _ = _content_type(header)
    if media_type and media_type not in HTML_TYPES and media_type not in FEED_TYPES:
        raise FetchError(f"not an HTML page or a feed (Content-Type {media_type})", response.status_code)


def _content_type(header: str | None) -> tuple[str, str | None]:
    """(media type, charset) of a Content-Type header."""
    if not header:
        return "", None
    media_type, *params = header.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return media_type.strip().lower(), charset


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _network_error(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return match.group(1).strip() if match else (text.split("(Caused by")[0].strip() or type(exc).__name__)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


# ----------------------------------------------------------------------------------------------
# Conditional GET state: table http_cache


class HttpCache:
    """Validators per crawled URL, plus the hash of what the page produced (table `http_cache`)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def validators(self, url: str, twin: str) -> Validators | None:
        """Stored validators, but only while `twin` still holds the document this URL produced.

        A crawl whose batch was never stored (or a page that was rejected) is then fetched in full
        again instead of being skipped as "not modified".
        """
        row = self._conn.execute(
            """SELECT c.etag, c.last_modified FROM http_cache c
               WHERE c.url = %s AND (c.etag IS NOT NULL OR c.last_modified IS NOT NULL)
                 AND EXISTS (SELECT 1 FROM raw_documents r
                             WHERE r.twin = %s AND r.content_hash = c.content_hash)""",
            (url, twin),
        ).fetchone()
        return None if row is None else Validators(etag=row[0], last_modified=row[1])

    def record(self, url: str, status: int, *, etag: str | None = None, last_modified: str | None = None,
               content_hash: str | None = None) -> None:
        self._conn.execute(
            """INSERT INTO http_cache (url, etag, last_modified, status, content_hash, fetched_at)
               VALUES (%s, %s, %s, %s, %s, now())
               ON CONFLICT (url) DO UPDATE SET etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified,
                   status = EXCLUDED.status, content_hash = EXCLUDED.content_hash, fetched_at = now()""",
            (url, etag, last_modified, status, content_hash),
        )

    def record_not_modified(self, url: str) -> None:
        self._conn.execute("UPDATE http_cache SET status = 304, fetched_at = now() WHERE url = %s", (url,))


# ----------------------------------------------------------------------------------------------
# The crawl


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
