"""Fetching public pages over plain HTTP, politely: robots.txt, a per-host rate limit, retries with
backoff, a size cap and a deadline per page, redirects and conditional GET. The crawl that uses it
is `crawl.py`."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from twin.sources.feeds import FEED_TYPES
from twin.sources.rate_limit import SHARED_RATE_LIMITER, HostRateLimiter
from twin.sources.robots import RobotsRules
from twin.sources.text import decode_bytes

DEFAULT_USER_AGENT = "twin-crawler/0.1 (+https://github.com/llm-twin-platform)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: crawlers must read at least 500 KiB of robots.txt
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
