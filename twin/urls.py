"""Document URLs: which schemes a document may have, and which site a URL belongs to."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# file: documents read from a local folder; ssh/git: files of a repository cloned over those
DOCUMENT_URL_SCHEMES = ("http", "https", "file", "ssh", "git")

# Suffixes under which each subdomain is someone else's site: the common multi-label public
# suffixes plus hosting platforms whose subdomains are different authors (a subset of the Public
# Suffix List, which is not bundled; unknown hosts fall back to the last two labels).
_SHARED_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au", "co.nz", "co.jp",
    "co.in", "co.za", "com.br", "com.mx", "com.cn", "com.tw", "com.sg", "com.tr", "co.kr",
    "github.io", "gitlab.io", "netlify.app", "vercel.app", "pages.dev", "web.app", "herokuapp.com",
    "substack.com", "medium.com", "wordpress.com", "blogspot.com", "ghost.io", "hashnode.dev",
    "tumblr.com", "wixsite.com", "weebly.com", "squarespace.com", "neocities.org", "bearblog.dev",
})


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a document's URL, or None when it can."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in DOCUMENT_URL_SCHEMES:
        shown = f"{parts.scheme}:" if parts.scheme else "no scheme"
        return (f"url {url[:200]!r} has {shown}; a document URL must be http(s) (file://, ssh:// or "
                "git:// for local files and repositories)")
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        return f"url {url[:200]!r} has no host"
    return None


def is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registrable_domain(url: str) -> str | None:
    """The site a web URL belongs to (`blog.example.co.uk` -> `example.co.uk`,
    `maya.substack.com` -> `maya.substack.com`); None for a URL without a host."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host:
        return None
    labels = host.split(".")
    if len(labels) <= 2 or host.replace(".", "").isdigit():
        return host
    if ".".join(labels[-2:]) in _SHARED_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def same_site(first: str, second: str) -> bool:
    """Whether two web URLs belong to the same registrable domain."""
    a, b = registrable_domain(first), registrable_domain(second)
    return a is not None and a == b
