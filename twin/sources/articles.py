"""Reading crawled pages: an article's text and metadata and an archive's links (feeds: `feeds.py`).

No fetching happens here (that is `twin/sources/fetcher.py`); every function takes text already
downloaded. Article text comes out of the one converter (`twin/markup.py`) without the page's
chrome lines (`twin.cleaning.strip_chrome`): the same text every other route gives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup, Tag

from twin.cleaning import strip_chrome
from twin.documents import Category, RawDocument
from twin.markup import content_root, parse_html, render, strip_boilerplate
from twin.sources.text import parse_date_or_none
from twin.urls import is_loopback_url, is_web_url, same_site

MIN_WORDS = 10  # fewer readable words than this is not an article
PAYWALL_TEASER_WORDS = 150  # a "Member-only story" badge with less text than this is a teaser

ARTICLE_TYPES = frozenset({"article", "blogposting", "newsarticle", "techarticle", "report",
                           "socialmediaposting", "scholarlyarticle"})
LISTING_TYPES = frozenset({"profilepage", "collectionpage", "blog", "itemlist", "person"})

_LISTING_PATH = re.compile(r"^/(?:@[^/]+|archives?|posts|articles|blog|writing|page/\d+|tags?/[^/]+|"
                           r"category/[^/]+)?/?$", re.I)
_MEDIUM_STORY = re.compile(r"^/(?:@[^/]+|[^/@]+)/[^/]+-[0-9a-f]{8,12}/?$|^/p/[0-9a-f]{8,12}/?$")
_SUBSTACK_POST = re.compile(r"^/p/[^/]+/?$")
_NOT_ARTICLE_PATH = re.compile(
    r"/(?:tags?|categor(?:y|ies)|topics?|authors?|page|search|about|archives?|feed|rss|log-?in|sign-?in|"
    r"sign-?up|subscribe|account|comments?|followers|following|lists|cdn-cgi|wp-admin|wp-login\.php)(?:/|$)",
    re.I)
_FILE_PATH = re.compile(r"\.(?:png|jpe?g|gif|webp|svg|ico|css|js|pdf|xml|json|zip|mp3|mp4)$", re.I)
_TRACKING_PARAM = re.compile(r"^(?:utm_\w+|source|ref|ref_src|fbclid|gclid|mc_cid|mc_eid)$", re.I)

_PAYWALL_HARD = re.compile(
    r"this post is for paid subscribers|this post is for paying subscribers|"
    r"keep reading with a \d+-day free trial|"
    r"subscribe to keep reading|create an account to read the full story|"
    r"(?:author|writer) made this story available to medium members only|upgrade to paid to read",
    re.I)
_PAYWALL_SOFT = re.compile(r"member-only story|members-only story|for paid subscribers only", re.I)
class ExtractionError(Exception):
    """A page that yields no article; `reason` is what the rejection says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ArticleLink:
    """A discovered article URL, with what the feed said about it (fallbacks for the page's own)."""

    url: str
    title: str = ""
    published_at: date | None = None


# ----------------------------------------------------------------------------------------------
# What kind of page


def page_is_listing(soup: BeautifulSoup, page_url: str) -> bool:
    """A profile, archive or index page rather than one article (article metadata always wins)."""
    meta = _meta(soup)
    og_type = meta.get("og:type", "").lower()
    types: set[str] = set()
    for item in _json_ld(soup):
        types |= _types(item)
    if og_type == "article" or types & ARTICLE_TYPES:
        return False
    if og_type == "profile" or types & LISTING_TYPES:
        return True
    if _LISTING_PATH.match(urlsplit(page_url).path or "/"):
        return True
    return len(soup.find_all("article")) >= 2


def detect_platform(soup: BeautifulSoup, *urls: str) -> str:
    """`medium`, `substack` or `blog`, by host, then by the platform's own markers in the page."""
    for url in urls:
        host = (urlsplit(url).hostname or "").lower()
        if host == "medium.com" or host.endswith(".medium.com"):
            return "medium"
        if host == "substack.com" or host.endswith(".substack.com"):
            return "substack"
    meta = _meta(soup)
    names = " ".join(meta.get(key, "") for key in ("generator", "al:ios:app_name", "twitter:app:name:iphone"))
    assets = " ".join([meta.get("og:image", "")] + [str(tag.get("src") or tag.get("href") or "")
                                                    for tag in soup.find_all(["script", "img", "link"])])
    names, assets = names.lower(), assets.lower()
    if "substack" in names or "substackcdn.com" in assets:
        return "substack"
    if "medium" in names or "cdn-client.medium.com" in assets or "miro.medium.com" in assets:
        return "medium"
    return "blog"


# ----------------------------------------------------------------------------------------------
# Discovery


def discover_article_links(soup: BeautifulSoup, page_url: str) -> list[ArticleLink]:
    """Same-host article links of a profile/archive page, in page order.

    Medium story and Substack post URLs count anywhere on the page; other links only inside an
    `<article>`, a heading or with rel="bookmark", and never tag/about/login/... pages.
    """
    host = urlsplit(page_url).netloc.lower()
    this_page = clean_link(page_url)
    platform = detect_platform(soup, page_url)
    found: list[str] = []
    for anchor in soup.find_all("a", href=True):
        url = clean_link(urljoin(page_url, str(anchor["href"]).strip()))
        parts = urlsplit(url)
        path = parts.path or "/"
        if parts.scheme not in ("http", "https") or parts.netloc != host or url == this_page:
            continue
        if path == "/" or _FILE_PATH.search(path) or url in found:
            continue
        platform_post = ((platform == "medium" and _MEDIUM_STORY.match(path)) or
                         (platform == "substack" and _SUBSTACK_POST.match(path)))
        if platform_post or (not _NOT_ARTICLE_PATH.search(path) and _links_an_article(anchor)):
            found.append(url)
    return [ArticleLink(url=url) for url in found]


def next_listing_url(soup: BeautifulSoup, page_url: str) -> str | None:
    """The same-host rel="next" page of a paginated archive."""
    tag = soup.find("link", rel="next", href=True) or soup.find("a", rel="next", href=True)
    if tag is None:
        return None
    url = clean_link(urljoin(page_url, str(tag["href"]).strip()))
    return url if urlsplit(url).netloc == urlsplit(page_url).netloc.lower() else None


def advertised_feed_url(soup: BeautifulSoup, page_url: str) -> str | None:
    """The RSS/Atom feed a page links to with <link rel="alternate">."""
    for tag in soup.find_all("link", rel="alternate", href=True):
        if str(tag.get("type", "")).lower() in ("application/rss+xml", "application/atom+xml"):
            return urljoin(page_url, str(tag["href"]).strip())
    return None


def clean_link(url: str) -> str:
    """The URL without its fragment and tracking parameters (utm_*, source, ref, ...)."""
    parts = urlsplit(url)
    query = parts.query
    params = parse_qsl(query, keep_blank_values=True)
    kept = [(name, value) for name, value in params if not _TRACKING_PARAM.match(name)]
    if len(kept) != len(params):
        query = urlencode(kept)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", query, ""))


def _links_an_article(anchor: Tag) -> bool:
    if "bookmark" in (anchor.get("rel") or []):
        return True
    return anchor.find_parent(["article", "h1", "h2", "h3", "h4"]) is not None


# ----------------------------------------------------------------------------------------------
# Article extraction


def extract_article(text: str, page_url: str, author: str, *, link: ArticleLink | None = None,
                    soup: BeautifulSoup | None = None) -> RawDocument:
    """The article on an HTML page as a RawDocument; ExtractionError says why there is none.

    `soup` (from parse_html(text)) is consumed: boilerplate is removed from it in place.
    """
    soup = soup if soup is not None else parse_html(text)
    meta = _meta(soup)
    ld_article = next((item for item in _json_ld(soup) if _types(item) & ARTICLE_TYPES), {})
    canonical = _canonical(soup, meta, page_url)
    title = _title(soup, meta, ld_article) or (link.title if link else "")
    published = _published(soup, meta, ld_article) or (link.published_at if link else None)
    platform = detect_platform(soup, canonical, page_url)
    notice = _paywall_notice(soup)

    for tag in soup.find_all(["script", "style", "noscript", "template"]):
        tag.decompose()
    root = content_root(soup)
    strip_boilerplate(root)
    # the page's chrome lines go by the cleaning rules, the one place that knows them
    content = strip_chrome(render(root), title=title, author=author).text
    words = len(content.split())
    if notice is not None and notice[1]:
        raise ExtractionError(f'paywalled or empty body: only a {words}-word preview before "{notice[0]}"')
    if notice is not None and words < PAYWALL_TEASER_WORDS:
        raise ExtractionError(f'paywalled or empty body: {words} words and a "{notice[0]}" notice')
    if words == 0:
        raise ExtractionError("paywalled or empty body: no readable text on the page")
    if words < MIN_WORDS:
        raise ExtractionError(f"paywalled or empty body: only {words} words of readable text")
    return RawDocument(author=author, category=Category.ARTICLE, platform=platform, url=canonical,
                       title=title, content=content, published_at=published)


def _meta(soup: BeautifulSoup) -> dict[str, str]:
    """<meta> content by property / name / itemprop (lower-cased); the first one wins."""
    found: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        key = tag.get("property") or tag.get("name") or tag.get("itemprop")
        content = tag.get("content")
        if key and content is not None:
            found.setdefault(str(key).strip().lower(), str(content).strip())
    return found


def _json_ld(soup: BeautifulSoup) -> list[dict[str, Any]]:
    """Every object in the page's JSON-LD scripts, @graph members included."""
    items: list[dict[str, Any]] = []
    for script in soup.find_all("script", type=re.compile(r"ld\+json", re.I)):
        try:
            stack: list[Any] = [json.loads(script.get_text())]
        except (ValueError, RecursionError):  # broken or absurdly nested JSON-LD is just absent
            continue
        while stack:
            value = stack.pop()
            if isinstance(value, list):
                stack.extend(reversed(value))
            elif isinstance(value, dict):
                items.append(value)
                if "@graph" in value:
                    stack.append(value["@graph"])
    return items


def _types(item: dict[str, Any]) -> set[str]:
    value = item.get("@type", [])
    return {str(v).lower() for v in (value if isinstance(value, list) else [value])}


def _canonical(soup: BeautifulSoup, meta: dict[str, str], page_url: str) -> str:
    """The page's canonical URL, trusted only on the page's own site (registrable domain): a
    page must not claim, and so replace, another site's document. A saved page (a file, or a
    mirror of saved pages served from this machine) keeps the canonical URL it was saved with."""
    tag = soup.find("link", rel="canonical", href=True)
    saved = not is_web_url(page_url) or is_loopback_url(page_url)
    for candidate in (tag["href"] if tag else None, meta.get("og:url")):
        if candidate:
            url = urljoin(page_url, str(candidate).strip()).split("#", 1)[0]
            if is_web_url(url) and (saved or same_site(url, page_url)):
                return url
    return page_url


def _title(soup: BeautifulSoup, meta: dict[str, str], ld_article: dict[str, Any]) -> str:
    headline = ld_article.get("headline")
    h1 = soup.find("h1")
    title_tag = soup.find("title")
    page_title = title_tag.get_text() if title_tag else ""
    candidates = [headline if isinstance(headline, str) else "", meta.get("og:title", ""),
                  meta.get("twitter:title", ""), h1.get_text(" ") if h1 else "",
                  re.split(r"\s+[|–—]\s+", page_title)[0]]
    for candidate in candidates:
        title = " ".join(candidate.replace("\x00", "").split())
        if title and len(title) <= 300:  # longer is an unclosed <h1> that swallowed the page
            return title
    return ""


def _published(soup: BeautifulSoup, meta: dict[str, str], ld_article: dict[str, Any]) -> date | None:
    time_tag = (soup.find("time", attrs={"itemprop": "datePublished"}) or
                soup.find("time", attrs={"datetime": True}))
    candidates = [meta.get("article:published_time"), ld_article.get("datePublished"),
                  meta.get("datepublished"), meta.get("date"),
                  time_tag.get("datetime") if time_tag else None]
    for candidate in candidates:
        if isinstance(candidate, str) and (parsed := parse_date_or_none(candidate)) is not None:
            return parsed
    return None


def _paywall_notice(soup: BeautifulSoup) -> tuple[str, bool] | None:
    """(notice text, whether it cuts the article) of a paywall banner, if the page shows one."""
    soft: str | None = None
    for string in soup.find_all(string=re.compile(f"{_PAYWALL_HARD.pattern}|{_PAYWALL_SOFT.pattern}", re.I)):
        if string.parent is None or string.parent.name in ("script", "style", "title", "noscript"):
            continue
        text = " ".join(str(string).split())
        if len(text) > 200:  # a notice is a short UI string, not a sentence inside the prose
            continue
        if (hard := _PAYWALL_HARD.search(text)) is not None:
            return hard.group(0), True
        if soft is None and (match := _PAYWALL_SOFT.search(text)) is not None:
            soft = match.group(0)
    return (soft, False) if soft is not None else None
