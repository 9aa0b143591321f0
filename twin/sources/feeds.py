"""RSS 2.0, RSS 1.0 and Atom feeds: is a fetched body a feed, and which articles does it link."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import urljoin, urlsplit

from twin.sources.articles import ArticleLink, ExtractionError, clean_link
from twin.sources.text import parse_date_or_none

FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml",
                        "application/xml", "text/xml"})
_FEED_START = re.compile(r"\s*(?:<\?[^>]*>\s*|<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<(?:rss|feed|rdf:rdf)\b",
                         re.I | re.S)



def is_feed(content_type: str, text: str) -> bool:
    """RSS/Atom by its root element, or any XML that is not XHTML (so it can be rejected by name)."""
    head = text.lstrip("\ufeff")[:4096]
    if _FEED_START.match(head):
        return True
    return content_type in FEED_TYPES and re.search(r"<html\b", head, re.I) is None



def feed_links(body: bytes, text: str, feed_url: str) -> list[ArticleLink]:
    """The article link, title and date of each item of an RSS 2.0, RSS 1.0 or Atom feed."""
    if re.search(r"<!ENTITY", text[:20_000], re.I):
        raise ExtractionError("feed declares XML entities, which are refused")
    root = _parse_xml(body, text)
    kind = _local(root.tag)
    if kind not in ("rss", "feed", "RDF"):
        raise ExtractionError(f"XML document is not an RSS or Atom feed (root element <{kind}>)")
    links: list[ArticleLink] = []
    seen: set[str] = set()
    for entry in root.iter():
        if _local(entry.tag) not in ("item", "entry"):
            continue
        href = _entry_href(entry)
        if not href:
            continue
        url = clean_link(urljoin(feed_url, href))
        if urlsplit(url).scheme not in ("http", "https") or url in seen:
            continue
        seen.add(url)
        dates = [_child_text(entry, name) for name in ("pubDate", "published", "date", "issued", "updated")]
        published = next((parsed for value in dates if (parsed := parse_date_or_none(value)) is not None), None)
        links.append(ArticleLink(url=url, title=" ".join(_child_text(entry, "title").split()),
                                 published_at=published))
    return links



def _parse_xml(body: bytes, text: str) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as first:
        # bytes in another encoding than the XML declaration says: try the decoded text
        try:
            return ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text.lstrip("\ufeff")))
        except ET.ParseError:
            raise ExtractionError(f"feed is not well-formed XML ({first})") from None



def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1].split(":")[-1] if isinstance(tag, str) else ""



def _child_text(entry: ET.Element, name: str) -> str:
    for child in entry:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""



def _entry_href(entry: ET.Element) -> str:
    for child in entry:
        if _local(child.tag) != "link":
            continue
        if child.get("href"):
            if child.get("rel", "alternate") == "alternate":
                return child.get("href", "").strip()
        elif child.text and child.text.strip():
            return child.text.strip()
    for child in entry:
        if _local(child.tag) == "guid" and child.get("isPermaLink", "true") != "false":
            guid = (child.text or "").strip()
            if guid.startswith(("http://", "https://")):
                return guid
    about = next((value for key, value in entry.attrib.items() if _local(key) == "about"), "")
    return about.strip()

