"""The web crawler against a real HTTP server on 127.0.0.1 and the real database (http_cache lives there)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest

from twin.documents import Category, RawDocument
from twin.sources.articles import ExtractionError, extract_article
from twin.sources.batch import SourceBatch, store_batch
from twin.sources.crawl import crawl
from twin.sources.fetcher import DEFAULT_USER_AGENT, CrawlSettings, Fetcher
from twin.sources.rate_limit import HostRateLimiter
from twin.sources.robots import RobotsRules
from twin.sources.text import decode_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "web"
FAST = CrawlSettings(timeout_s=2.0, per_host_delay_s=0, retries=2, backoff_s=0.01, max_retry_after_s=5)
AUTHOR = "Ada Byte"

SMALL_DIFFS = "/@ada.byte/why-small-diffs-win-3f9a1c2b7d4e"
MEMBER_ONLY = "/@ada.byte/the-index-you-forgot-8c2e4b6a1f0d"
RETRIES_POST = "/p/notes-on-retries"
PAID_POST = "/p/the-paid-deep-dive"
PLAIN_TEXT = "/blog/2024/03/plain-text-wins"
MALFORMED = "/blog/malformed"
CP1252_TEXT = ("<html><head>{meta}<title>Café notes</title></head><body><article><h1>Café notes</h1>"
               "<p>El Señor at the corner café brews coffee before the trams start. He says the crema tells "
               "him whether the day will go well \u2014 and he is “usually right”.</p></article></body></html>")


# ----------------------------------------------------------------------------------------------
# A local web site


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    at: float  # server-side time.monotonic() when the request arrived


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})
    content_length: bool = True
    delay_s: float = 0.0


Route = Callable[[Seen], Reply]


class Site:
    """Routes by path (query ignored) and a log of every request the server received."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, handler: Route) -> None:
        self.routes[path] = handler

    def serve(self, path: str, reply: Reply) -> None:
        self.routes[path] = lambda _: reply

    def serve_fixture(self, path: str, name: str, content_type: str = "text/html; charset=utf-8") -> None:
        self.routes[path] = lambda _: Reply(body=self.fixture(name), headers={"Content-Type": content_type})

    def fixture(self, name: str) -> bytes:
        return (FIXTURES / name).read_text(encoding="utf-8").replace("{{BASE}}", self.base).encode("utf-8")

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    def requests_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.split("?")[0] == path]


def _handler_for(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            seen = Seen(self.path, dict(self.headers.items()), time.monotonic())
            site.seen.append(seen)
            route = site.routes.get(self.path.split("?")[0])
            reply = route(seen) if route else Reply(404, b"<html><body><h1>Not found</h1></body></html>")
            time.sleep(reply.delay_s)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.content_length:
                self.send_header("Content-Length", str(len(reply.body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hung up on purpose (timeouts, size cap)


@pytest.fixture
def site() -> Iterator[Site]:
    site = Site()
    server = _QuietServer(("127.0.0.1", 0), _handler_for(site))
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    site.serve("/robots.txt", Reply(body=b"User-agent: *\nDisallow: /private/\n",
                                    headers={"Content-Type": "text/plain"}))
    site.serve_fixture("/@ada.byte", "medium_profile.html")
    site.serve_fixture(SMALL_DIFFS, "medium_article.html")
    site.serve_fixture(MEMBER_ONLY, "medium_member_only.html")
    site.serve_fixture("/archive", "substack_archive.html")
    site.serve_fixture(RETRIES_POST, "substack_post.html")
    site.serve_fixture(PAID_POST, "substack_paywalled.html")
    site.serve_fixture(PLAIN_TEXT, "blog_article.html")
    site.serve_fixture(MALFORMED, "blog_malformed.html")
    site.serve_fixture("/feed.xml", "feed_rss.xml", "application/rss+xml; charset=utf-8")
    site.serve_fixture("/atom.xml", "feed_atom.xml", "application/atom+xml")
    yield site
    server.shutdown()
    server.server_close()


def only_document(batch: SourceBatch) -> RawDocument:
    assert not batch.rejections, batch.rejections
    assert len(batch.documents) == 1
    return batch.documents[0]


def reasons(batch: SourceBatch) -> dict[str, str]:
    return {rejection.line: rejection.reason for rejection in batch.rejections}


# ----------------------------------------------------------------------------------------------
# Article pages


def test_medium_article_page_becomes_one_clean_document(conn: psycopg.Connection, site: Site) -> None:
    stats: dict[str, int] = {}
    batch = crawl(conn, site.url(SMALL_DIFFS), AUTHOR, settings=FAST, stats=stats)
    doc = only_document(batch)
    assert batch.source == site.url(SMALL_DIFFS)
    assert (doc.author, doc.category, doc.platform) == (AUTHOR, Category.ARTICLE, "medium")
    assert doc.url == "https://medium.com/@ada.byte/why-small-diffs-win-3f9a1c2b7d4e"  # the canonical url
    assert doc.title == "Why small diffs win"
    assert doc.published_at == date(2024, 2, 20)
    paragraphs = doc.content.split("\n\n")
    assert paragraphs[0].startswith("A reviewer can hold forty lines of change in their head.")
    assert "## How I cut a feature into slices" in paragraphs
    assert ("1. Land the schema change behind nothing at all; it is inert on its own.\n"
            "2. Add the code path behind a flag that defaults to off.\n"
            "3. Flip the flag for one internal account and watch the graphs.") in paragraphs  # an <ol>
    assert paragraphs[-1].startswith("If a change cannot be split")
    for chrome in ("Follow", "Listen", "Share", "312", "5 min read", "Written by", "Sign in", "More from",
                   "__APOLLO_STATE__", "Code Review", "Why small diffs win"):
        assert chrome not in doc.content
    assert stats == {"fetched": 1, "not_modified": 0, "rejected": 0, "robots_blocked": 0, "documents": 1}
    assert site.requests_to(SMALL_DIFFS)[0].headers["User-Agent"] == DEFAULT_USER_AGENT


def test_substack_post_keeps_the_body_and_drops_subscribe_boxes(conn: psycopg.Connection, site: Site) -> None:
    doc = only_document(crawl(conn, site.url(RETRIES_POST), AUTHOR, settings=FAST))
    assert doc.platform == "substack"
    assert doc.url == "https://adabyte.substack.com/p/notes-on-retries"
    assert doc.title == "Notes on retries"
    assert doc.published_at == date(2024, 4, 2)  # from JSON-LD datePublished
    paragraphs = doc.content.split("\n\n")
    assert paragraphs[0].startswith("Every client library ships with retries turned on")
    assert "## Three rules I now follow" in paragraphs
    assert "- Retry only what is safe to repeat." in doc.content
    assert "```\ndelay = min(cap, base * 2 ** attempt)\nsleep(random.uniform(0, delay))\n```" in paragraphs
    for chrome in ("Thanks for reading", "Type your email", "Discussion about this post", "Great post",
                   "Substack is the home", "Like", "Sign in", "Apr 02, 2024"):
        assert chrome not in doc.content


def test_generic_blog_article_uses_time_element_and_drops_site_chrome(conn: psycopg.Connection,
                                                                      site: Site) -> None:
    doc = only_document(crawl(conn, site.url(PLAIN_TEXT), AUTHOR, settings=FAST))
    assert doc.platform == "blog"
    assert doc.url == site.url(PLAIN_TEXT)  # relative canonical resolved against the page
    assert doc.title == "Plain text wins"
    assert doc.published_at == date(2024, 3, 12)  # <time datetime>, in the writer's time zone
    paragraphs = doc.content.split("\n\n")
    assert paragraphs[:2] == [
        "I have moved my notes between five apps in ten years. The only notes that survived every move "
        "were the ones in plain text files.",
        "A text file does not need a vendor, a login or an export button. It opens in whatever editor "
        "exists on the machine in front of me, today or in twenty years.",
    ]
    assert "## What I keep in plain text" in paragraphs and "### The one rule" in paragraphs  # levels kept
    assert "Write it so that grep can find it." in doc.content
    assert "# every note that mentions the queue, newest first" in doc.content  # code keeps its comments
    assert paragraphs[-1] == "> Formats come and go; bytes you can read stay."  # a <blockquote>
    for chrome in ("Skip to content", "Home", "Share this", "Twitter", "Related posts", "Boring databases",
                   "2 comments", "org-mode", "Tags:", "©", "4 min read", "noopener", "font-family"):
        assert chrome not in doc.content


def test_malformed_html_still_gives_its_text(conn: psycopg.Connection, site: Site) -> None:
    doc = only_document(crawl(conn, site.url(MALFORMED), AUTHOR, settings=FAST))
    assert doc.title == "Notes from a broken template"
    assert doc.published_at is None
    assert "This page was written by a template that never closes anything." in doc.content
    assert "waiting to be read by someone patient." in doc.content
    assert "- First point that stays open\n- Second point, also open" in doc.content
    assert "A last paragraph with an unclosed italic" in doc.content
    assert "Copyright nobody" not in doc.content


def test_redirect_is_followed_and_the_document_keeps_the_final_url(conn: psycopg.Connection, site: Site) -> None:
    site.serve("/old-post", Reply(301, headers={"Location": PLAIN_TEXT}))
    doc = only_document(crawl(conn, site.url("/old-post"), AUTHOR, settings=FAST))
    assert doc.url == site.url(PLAIN_TEXT)


# ----------------------------------------------------------------------------------------------
# Profiles, archives and feeds


def test_medium_profile_discovers_stories_and_rejects_the_member_only_one(conn: psycopg.Connection,
                                                                           site: Site) -> None:
    stats: dict[str, int] = {}
    batch = crawl(conn, site.url("/@ada.byte"), AUTHOR, settings=FAST, stats=stats)
    assert [doc.title for doc in batch.documents] == ["Why small diffs win"]
    assert reasons(batch) == {site.url(MEMBER_ONLY): 'paywalled or empty body: only a 29-word preview before '
                                                     '"Create an account to read the full story"'}
    # tracking parameters are dropped; followers, about and tag pages are not articles
    assert site.paths() == ["/robots.txt", "/@ada.byte", MEMBER_ONLY, SMALL_DIFFS]
    assert stats == {"fetched": 3, "not_modified": 0, "rejected": 1, "robots_blocked": 0, "documents": 1}


def test_substack_archive_crawls_same_host_posts_only(conn: psycopg.Connection, site: Site) -> None:
    batch = crawl(conn, site.url("/archive"), AUTHOR, settings=FAST)
    assert [doc.url for doc in batch.documents] == ["https://adabyte.substack.com/p/notes-on-retries"]
    assert reasons(batch) == {site.url(PAID_POST): 'paywalled or empty body: only a 13-word preview before '
                                                   '"This post is for paid subscribers"'}
    assert site.paths() == ["/robots.txt", "/archive", PAID_POST, RETRIES_POST]


def test_archive_rendered_by_javascript_falls_back_to_its_feed(conn: psycopg.Connection, site: Site) -> None:
    site.serve("/archive", Reply(body=b'<html><head><link rel="alternate" type="application/rss+xml" '
                                      b'href="/feed.xml"></head><body><div id="app"></div></body></html>'))
    batch = crawl(conn, site.url("/archive"), AUTHOR, settings=FAST)
    assert sorted(doc.title for doc in batch.documents) == ["Notes on retries", "Plain text wins"]
    assert "/feed.xml" in site.paths()


def test_rss_feed_fetches_each_item_and_rejects_the_dead_one(conn: psycopg.Connection, site: Site) -> None:
    batch = crawl(conn, site.url("/feed.xml"), AUTHOR, settings=FAST)
    assert [(doc.title, doc.published_at) for doc in batch.documents] == [
        ("Notes on retries", date(2024, 4, 2)), ("Plain text wins", date(2024, 3, 12))]
    assert reasons(batch) == {site.url("/blog/2023/01/deleted-post"): "HTTP 404 Not Found"}
    assert site.paths()[1:] == ["/feed.xml", RETRIES_POST, PLAIN_TEXT, "/blog/2023/01/deleted-post"]


def test_atom_feed_dates_fill_in_for_pages_without_one(conn: psycopg.Connection, site: Site) -> None:
    batch = crawl(conn, site.url("/atom.xml"), AUTHOR, settings=FAST)
    assert not batch.rejections
    found = {doc.title: doc.published_at for doc in batch.documents}
    assert found == {"Plain text wins": date(2024, 3, 12),  # the page's own <time>
                     "Notes from a broken template": date(2023, 11, 2)}  # the feed's <published>


def test_paginated_archive_is_followed_through_rel_next(conn: psycopg.Connection, site: Site) -> None:
    site.serve("/blog/", Reply(body=f'<html><head><link rel="next" href="/blog/page/2/"></head><body><main>'
                                    f'<article><h2><a href="{PLAIN_TEXT}">Plain text wins</a></h2></article>'
                                    f'<a href="/tag/tools/">tools</a></main></body></html>'.encode()))
    site.serve("/blog/page/2/", Reply(body=f'<html><body><main><article><h2><a href="{MALFORMED}">Broken</a>'
                                           f'</h2></article><a rel="prev" href="/blog/">newer</a></main>'
                                           f'</body></html>'.encode()))
    batch = crawl(conn, site.url("/blog/"), AUTHOR, settings=FAST)
    assert [doc.title for doc in batch.documents] == ["Plain text wins", "Notes from a broken template"]
    assert site.paths() == ["/robots.txt", "/blog/", "/blog/page/2/", PLAIN_TEXT, MALFORMED]


def test_two_urls_of_one_article_give_one_document(conn: psycopg.Connection, site: Site) -> None:
    site.serve_fixture("/mirror/small-diffs", "medium_article.html")
    site.serve("/picks", Reply(body=f'<html><body><article><h2><a href="{SMALL_DIFFS}">a</a></h2></article>'
                                    f'<article><h2><a href="/mirror/small-diffs">b</a></h2></article>'
                                    f'</body></html>'.encode()))
    batch = crawl(conn, site.url("/picks"), AUTHOR, settings=FAST)
    assert [doc.url for doc in batch.documents] == ["https://medium.com/@ada.byte/why-small-diffs-win-3f9a1c2b7d4e"]
    assert reasons(batch) == {site.url("/mirror/small-diffs"): f"same article as {site.url(SMALL_DIFFS)} "
                              "(canonical url https://medium.com/@ada.byte/why-small-diffs-win-3f9a1c2b7d4e)"}


def test_max_pages_caps_the_articles_fetched(conn: psycopg.Connection, site: Site) -> None:
    batch = crawl(conn, site.url("/feed.xml"), AUTHOR, settings=FAST, max_pages=1)
    assert [doc.title for doc in batch.documents] == ["Notes on retries"]
    assert site.paths() == ["/robots.txt", "/feed.xml", RETRIES_POST]


def test_xml_that_is_not_a_feed_is_rejected_by_name(conn: psycopg.Connection, site: Site) -> None:
    site.serve("/sitemap.xml", Reply(body=b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/'
                                          b'schemas/sitemap/0.9"><url><loc>/a</loc></url></urlset>',
                                     headers={"Content-Type": "application/xml"}))
    batch = crawl(conn, site.url("/sitemap.xml"), AUTHOR, settings=FAST)
    assert reasons(batch) == {site.url("/sitemap.xml"):
                              "XML document is not an RSS or Atom feed (root element <urlset>)"}


# ----------------------------------------------------------------------------------------------
# Bad input: one rejection each, with its reason, and the crawl goes on


def _bad_routes(site: Site) -> None:
    site.serve("/gone", Reply(410, b"<html><body>Gone</body></html>"))
    site.serve("/broken", Reply(500, b"<html><body>Oops</body></html>"))
    site.serve("/loop/a", Reply(302, headers={"Location": "/loop/b"}))
    site.serve("/loop/b", Reply(302, headers={"Location": "/loop/a"}))
    site.serve("/whitepaper", Reply(body=b"%PDF-1.7 " + b"x" * 100, headers={"Content-Type": "application/pdf"}))
    big = b"<html><body>" + b"<p>too much text here</p>" * 90_000 + b"</body></html>"
    site.serve("/huge", Reply(body=big, content_length=False))
    site.serve("/huge-declared", Reply(body=big))
    site.serve("/empty", Reply(body=b""))
    site.serve("/chrome-only", Reply(body=b"<html><body><nav><a href='/'>Home</a></nav><main><div "
                                          b"class='share'>Share</div></main><footer>(c) me</footer></body></html>"))


@pytest.mark.parametrize(("path", "reason"), [
    ("/missing", "HTTP 404 Not Found"),
    ("/gone", "HTTP 410 Gone"),
    ("/broken", "HTTP 500 Internal Server Error (3 attempts)"),
    ("/loop/a", "too many redirects (more than 5): {base}/loop/a -> {base}/loop/b -> {base}/loop/a -> "
                "{base}/loop/b -> {base}/loop/a -> {base}/loop/b -> {base}/loop/a"),
    ("/whitepaper", "not an HTML page or a feed (Content-Type application/pdf)"),
    ("/huge", "page is over the 2.0 MB cap"),
    ("/huge-declared", "page is over the 2.0 MB cap (Content-Length 2,250,026 bytes)"),
    ("/empty", "empty body: HTTP 200 with no content"),
    ("/chrome-only", "paywalled or empty body: no readable text on the page"),
    (PAID_POST, 'paywalled or empty body: only a 13-word preview before "This post is for paid subscribers"'),
    ("/private/drafts", "blocked by robots.txt"),
])
def test_bad_page_is_rejected_with_its_reason(conn: psycopg.Connection, site: Site, path: str,
                                               reason: str) -> None:
    _bad_routes(site)
    batch = crawl(conn, site.url(path), AUTHOR, settings=FAST)
    assert batch.documents == []
    assert reasons(batch) == {site.url(path): reason.format(base=site.base)}
    if path == "/broken":
        assert len(site.requests_to("/broken")) == 3  # retried twice
    if path == "/private/drafts":
        assert site.requests_to(path) == []


def test_one_bad_item_does_not_stop_the_crawl(conn: psycopg.Connection, site: Site) -> None:
    _bad_routes(site)
    links = "".join(f'<article><h2><a href="{path}">{path}</a></h2></article>'
                    for path in ("/gone", "/whitepaper", "/empty", PLAIN_TEXT, "/private/drafts"))
    site.serve("/index", Reply(body=f"<html><body><main>{links}</main></body></html>".encode()))
    stats: dict[str, int] = {}
    batch = crawl(conn, site.url("/index"), AUTHOR, settings=FAST, stats=stats)
    assert [doc.title for doc in batch.documents] == ["Plain text wins"]
    assert sorted(reasons(batch).values()) == [
        "HTTP 410 Gone", "blocked by robots.txt", "empty body: HTTP 200 with no content",
        "not an HTML page or a feed (Content-Type application/pdf)"]
    assert [r.line_number for r in batch.rejections] == [1, 2, 3, 5]  # the ordinal of each item
    assert stats == {"fetched": 2, "not_modified": 0, "rejected": 4, "robots_blocked": 1, "documents": 1}


def test_timeout_is_retried_then_rejected(conn: psycopg.Connection, site: Site) -> None:
    site.serve("/slow", Reply(body=b"<html><body><p>late</p></body></html>", delay_s=1.5))
    settings = replace(FAST, timeout_s=0.3, retries=1)
    batch = crawl(conn, site.url("/slow"), AUTHOR, settings=settings)
    assert reasons(batch) == {site.url("/slow"): "timed out after 0.3 s (2 attempts)"}
    assert len(site.requests_to("/slow")) == 2


def test_connection_refused_is_rejected(conn: psycopg.Connection) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/post"
    batch = crawl(conn, url, AUTHOR, settings=replace(FAST, retries=0, respect_robots=False))
    assert reasons(batch) == {url: "connection failed: Connection refused (1 attempt)"}


def test_not_an_http_url_is_rejected(conn: psycopg.Connection) -> None:
    batch = crawl(conn, "ftp://example.com/post", AUTHOR, settings=FAST)
    assert reasons(batch) == {"ftp://example.com/post": "'ftp://example.com/post' is not an http(s) URL"}


def test_member_only_badge_rejects_a_teaser_but_not_a_whole_story() -> None:
    def page(words: int) -> str:
        body = " ".join(["word"] * words)
        return (f"<html><head><title>Story</title></head><body><article><p>Member-only story</p>"
                f"<h1>Story</h1><p>{body}</p></article></body></html>")

    with pytest.raises(ExtractionError) as teaser:
        extract_article(page(60), "https://medium.com/@a/story-1a2b3c4d5e6f", AUTHOR)
    assert teaser.value.reason == 'paywalled or empty body: 60 words and a "Member-only story" notice'
    whole = extract_article(page(400), "https://medium.com/@a/story-1a2b3c4d5e6f", AUTHOR)
    assert whole.platform == "medium" and whole.content == " ".join(["word"] * 400)


# ----------------------------------------------------------------------------------------------
# Encodings


@pytest.mark.parametrize(("content_type", "meta"), [
    ("text/html", ""),  # nothing declared
    ("text/html; charset=utf-8", ""),  # header lies
    ("text/html", '<meta charset="utf-8">'),  # meta lies
    ("text/html; charset=utf-8", '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'),
])
def test_windows_1252_page_with_a_wrong_or_missing_charset_decodes(conn: psycopg.Connection, site: Site,
                                                                    content_type: str, meta: str) -> None:
    site.serve("/cafe", Reply(body=CP1252_TEXT.format(meta=meta).encode("cp1252"),
                              headers={"Content-Type": content_type}))
    doc = only_document(crawl(conn, site.url("/cafe"), AUTHOR, settings=FAST))
    assert doc.title == "Café notes"
    assert "El Señor at the corner café brews coffee" in doc.content
    assert "go well \u2014 and he is “usually right”." in doc.content


def test_utf8_page_labelled_iso_8859_1_decodes_as_utf8() -> None:
    body = "<p>A naïve café</p>".encode()
    assert decode_bytes(body, "ISO-8859-1") == ("<p>A naïve café</p>", "utf-8")
    assert decode_bytes("<p>A naïve café</p>".encode("latin-1"), "ISO-8859-1")[0] == "<p>A naïve café</p>"
    polish = "<p>Zażółć gęślą jaźń</p>"
    assert decode_bytes(polish.encode("cp1250"), "windows-1250") == (polish, "cp1250")


# ----------------------------------------------------------------------------------------------
# robots.txt


def test_robots_rules_take_the_longest_match_for_our_agent() -> None:
    text = ("User-agent: *\nDisallow: /\n\n"
            "User-agent: Twin-Crawler\nDisallow: /drafts/\nAllow: /drafts/public$\nDisallow: /*.json$\n")
    ours = RobotsRules.parse(text, DEFAULT_USER_AGENT)
    assert ours.allows("https://example.com/blog/post")
    assert not ours.allows("https://example.com/drafts/secret")
    assert ours.allows("https://example.com/drafts/public")
    assert not ours.allows("https://example.com/drafts/public/more")
    assert not ours.allows("https://example.com/api/posts.json")
    assert ours.allows("https://example.com/api/posts.json?page=2")
    others = RobotsRules.parse(text, "OtherBot/2.0")
    assert not others.allows("https://example.com/blog/post")
    assert others.allows("https://example.com/robots.txt")


def test_missing_robots_txt_allows_everything(conn: psycopg.Connection, site: Site) -> None:
    del site.routes["/robots.txt"]
    only_document(crawl(conn, site.url(PLAIN_TEXT), AUTHOR, settings=FAST))


def test_unreadable_robots_txt_blocks_the_host_unless_robots_are_ignored(conn: psycopg.Connection,
                                                                         site: Site) -> None:
    site.serve("/robots.txt", Reply(503, b"down"))
    stats: dict[str, int] = {}
    batch = crawl(conn, site.url(PLAIN_TEXT), AUTHOR, settings=FAST, stats=stats)
    assert reasons(batch) == {site.url(PLAIN_TEXT): f"robots.txt of {site.base} could not be read (HTTP 503 "
                                                    "Service Unavailable (3 attempts)), so the host is not crawled"}
    assert stats["robots_blocked"] == 1 and site.requests_to(PLAIN_TEXT) == []
    only_document(crawl(conn, site.url(PLAIN_TEXT), AUTHOR, settings=replace(FAST, respect_robots=False)))


def test_robots_disallow_blocks_feed_items_without_requesting_them(conn: psycopg.Connection, site: Site) -> None:
    site.serve("/robots.txt", Reply(body=b"User-agent: twin-crawler\nDisallow: /p/\n",
                                    headers={"Content-Type": "text/plain"}))
    stats: dict[str, int] = {}
    batch = crawl(conn, site.url("/feed.xml"), AUTHOR, settings=FAST, stats=stats)
    assert reasons(batch)[site.url(RETRIES_POST)] == "blocked by robots.txt"
    assert site.requests_to(RETRIES_POST) == []
    assert len(site.requests_to("/robots.txt")) == 1  # cached per host
    assert stats["robots_blocked"] == 1


def test_robots_txt_is_read_up_to_500_kib(conn: psycopg.Connection, site: Site) -> None:
    rules = b"User-agent: *\nDisallow: /p/\n" + b"# padding\n" * 60_000
    site.serve("/robots.txt", Reply(body=rules, headers={"Content-Type": "text/plain"}))
    batch = crawl(conn, site.url(RETRIES_POST), AUTHOR, settings=FAST)
    assert reasons(batch) == {site.url(RETRIES_POST): "blocked by robots.txt"}


# ----------------------------------------------------------------------------------------------
# Retries


def _fails_then_serves(site: Site, failures: list[Reply]) -> Route:
    def handler(_: Seen) -> Reply:
        return failures.pop(0) if failures else Reply(body=site.fixture("blog_article.html"))
    return handler


def test_429_with_retry_after_waits_that_long_then_succeeds(site: Site) -> None:
    site.route("/busy", _fails_then_serves(site, [Reply(429, b"slow down", {"Retry-After": "2"})]))
    sleeps: list[float] = []
    with Fetcher(FAST, sleep=sleeps.append) as fetcher:
        page = fetcher.get(site.url("/busy"))
    assert page is not None and b"Plain text wins" in page.body
    assert sleeps == [2.0]
    assert len(site.requests_to("/busy")) == 2


def test_retry_after_over_the_cap_is_rejected_at_once(conn: psycopg.Connection, site: Site) -> None:
    site.serve("/busy", Reply(429, b"slow down", {"Retry-After": "3600"}))
    batch = crawl(conn, site.url("/busy"), AUTHOR, settings=FAST)
    assert reasons(batch) == {site.url("/busy"): "HTTP 429 Too Many Requests: the server asked to retry after "
                                                 "3600 s, over the 5 s cap"}
    assert len(site.requests_to("/busy")) == 1


def test_503_twice_then_success_backs_off_exponentially(conn: psycopg.Connection, site: Site) -> None:
    site.route("/flaky", _fails_then_serves(site, [Reply(503, b"busy"), Reply(503, b"busy")]))
    sleeps: list[float] = []
    with Fetcher(replace(FAST, backoff_s=0.5), sleep=sleeps.append) as fetcher:
        assert fetcher.get(site.url("/flaky")) is not None
    assert sleeps == [0.5, 1.0]
    site.route("/flaky", _fails_then_serves(site, [Reply(503, b"busy"), Reply(503, b"busy")]))
    doc = only_document(crawl(conn, site.url("/flaky"), AUTHOR, settings=FAST))
    assert doc.title == "Plain text wins"


# ----------------------------------------------------------------------------------------------
# Conditional GET


def _with_validators(site: Site, etag: str | None, last_modified: str | None) -> Route:
    def handler(seen: Seen) -> Reply:
        if (etag and seen.headers.get("If-None-Match") == etag) or (
                last_modified and seen.headers.get("If-Modified-Since") == last_modified):
            return Reply(304, headers={})
        headers = {"Content-Type": "text/html; charset=utf-8"}
        headers.update({"ETag": etag} if etag else {})
        headers.update({"Last-Modified": last_modified} if last_modified else {})
        return Reply(body=site.fixture("blog_article.html"), headers=headers)
    return handler


@pytest.mark.parametrize(("etag", "last_modified", "header"), [
    ('"v1"', None, "If-None-Match"),
    (None, "Tue, 12 Mar 2024 07:30:00 GMT", "If-Modified-Since"),
])
def test_unchanged_page_is_skipped_on_the_next_crawl(conn: psycopg.Connection, site: Site, etag: str | None,
                                                     last_modified: str | None, header: str) -> None:
    site.route("/cached", _with_validators(site, etag, last_modified))
    first = crawl(conn, site.url("/cached"), AUTHOR, settings=FAST)
    assert store_batch(conn, first).accepted == 1
    stats: dict[str, int] = {}
    second = crawl(conn, site.url("/cached"), AUTHOR, settings=FAST, stats=stats)
    assert second.documents == [] and second.rejections == []
    assert stats == {"fetched": 0, "not_modified": 1, "rejected": 0, "robots_blocked": 0, "documents": 0}
    [before, after] = site.requests_to("/cached")
    assert header not in before.headers
    assert after.headers[header] == (etag or last_modified)
    row = conn.execute("SELECT status, etag, last_modified FROM http_cache WHERE url = %s",
                       (site.url("/cached"),)).fetchone()
    assert row == (304, etag, last_modified)


def test_a_crawl_that_was_never_stored_is_fetched_in_full_again(conn: psycopg.Connection, site: Site) -> None:
    site.route("/cached", _with_validators(site, '"v1"', None))
    crawl(conn, site.url("/cached"), AUTHOR, settings=FAST)  # batch dropped: e.g. the run died before storing
    again = crawl(conn, site.url("/cached"), AUTHOR, settings=FAST)
    assert [doc.title for doc in again.documents] == ["Plain text wins"]
    assert "If-None-Match" not in site.requests_to("/cached")[1].headers


# ----------------------------------------------------------------------------------------------
# Rate limit


def test_rate_limit_spaces_requests_to_one_host(conn: psycopg.Connection, site: Site) -> None:
    crawl(conn, site.url("/archive"), AUTHOR, settings=replace(FAST, per_host_delay_s=0.3))
    arrivals = [seen.at for seen in site.seen]
    assert len(arrivals) == 4  # robots.txt, the archive, two posts
    assert min(later - earlier for earlier, later in pairwise(arrivals)) >= 0.3


def test_rate_limit_of_zero_never_sleeps_and_a_delay_does(site: Site) -> None:
    sleeps: list[float] = []

    def record_and_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    limiter = HostRateLimiter(sleep=record_and_sleep)
    with Fetcher(FAST, limiter=limiter) as fetcher:
        for path in (PLAIN_TEXT, RETRIES_POST, SMALL_DIFFS):
            assert fetcher.get(site.url(path)) is not None
    assert sleeps == []
    with Fetcher(replace(FAST, per_host_delay_s=0.05), limiter=limiter) as fetcher:
        fetcher.get(site.url(PLAIN_TEXT))
        fetcher.get(site.url(RETRIES_POST))
    assert sleeps and all(0 < seconds <= 0.05 for seconds in sleeps)


def test_rate_limiter_waits_from_the_end_of_the_last_request() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = HostRateLimiter(clock=lambda: now[0], sleep=fake_sleep)
    with limiter.slot("a.example", 1.0):
        now[0] += 0.25  # the first request took 0.25 s
    with limiter.slot("b.example", 1.0):
        pass  # another host does not wait
    now[0] += 0.4
    with limiter.slot("a.example", 1.0):
        pass
    assert sleeps == [pytest.approx(0.6)]


# ----------------------------------------------------------------------------------------------
# Stored like any import


def test_crawl_result_is_stored_with_documents_and_rejections(conn: psycopg.Connection, site: Site) -> None:
    site.serve_fixture("/blog/2023/01/deleted-post", "substack_paywalled.html")
    batch = crawl(conn, site.url("/feed.xml"), AUTHOR, settings=FAST)
    summary = store_batch(conn, batch)
    assert (summary.accepted, len(summary.rejected), summary.twins) == (2, 1, {"ada-byte"})
    rows = conn.execute("SELECT url, title, published_at, platform, category, content FROM raw_documents "
                        "ORDER BY url").fetchall()
    assert [row[:5] for row in rows] == [
        (site.url(PLAIN_TEXT), "Plain text wins", date(2024, 3, 12), "blog", "article"),
        ("https://adabyte.substack.com/p/notes-on-retries", "Notes on retries", date(2024, 4, 2), "substack",
         "article"),
    ]
    plain_text_paragraphs = rows[0][5].split("\n\n")
    assert plain_text_paragraphs[0].startswith("I have moved my notes between five apps")
    assert len(plain_text_paragraphs) == 8
    stored = conn.execute("SELECT line_number, line, reason FROM import_rejections").fetchall()
    assert stored == [(3, site.url("/blog/2023/01/deleted-post"),
                       'paywalled or empty body: only a 13-word preview before "This post is for paid subscribers"')]
    cached: dict[str, int] = dict(conn.execute("SELECT url, status FROM http_cache").fetchall())
    assert cached == {site.url("/feed.xml"): 200, site.url(RETRIES_POST): 200, site.url(PLAIN_TEXT): 200,
                      site.url("/blog/2023/01/deleted-post"): 200}
