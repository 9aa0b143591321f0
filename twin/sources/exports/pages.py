"""HTML members of an export (Medium and Substack post pages) as text, through the one converter."""

from __future__ import annotations

import zipfile
from pathlib import PurePosixPath

from bs4 import BeautifulSoup, Tag
from bs4.builder import ParserRejectedMarkup

from twin.markup import render, strip_boilerplate
from twin.sources.exports.archive import Archive, MemberError
from twin.sources.text import decode_bytes

TITLE_CHARS = 100



def is_post_page(name: str) -> bool:
    path = PurePosixPath(name)
    return path.suffix.lower() == ".html" and path.parent.name == "posts"



def parse_html(archive: Archive, info: zipfile.ZipInfo) -> BeautifulSoup:
    try:
        return BeautifulSoup(decode_bytes(archive.read(info))[0], "html.parser")
    except ParserRejectedMarkup as exc:
        raise MemberError(f"{info.filename} is not readable HTML: {exc}") from exc



def page_text(info: zipfile.ZipInfo, body: Tag, *, drop_heading: str = "") -> str:
    try:
        return html_to_text(body, drop_heading=drop_heading)
    except RecursionError as exc:  # hostile pages can nest elements thousands deep
        raise MemberError(f"{info.filename} nests its HTML too deeply to read") from exc



def html_to_text(element: Tag, *, drop_heading: str = "") -> str:
    """The one converter's text of an export's HTML body (`twin/markup.py`).

    A first heading equal to `drop_heading` (Medium repeats the title in the body) is left out.
    """
    strip_boilerplate(element)
    blocks = render(element).split("\n\n")
    if blocks and drop_heading and blocks[0].lstrip("#").strip() == " ".join(drop_heading.split()):
        blocks = blocks[1:]
    return "\n\n".join(blocks).strip()



def title_from_text(text: str) -> str:
    """A post's title: its first non-blank line, cut at a word near 100 characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) <= TITLE_CHARS:
        return first
    cut = first[:TITLE_CHARS].rsplit(" ", 1)[0]
    return cut + "…"

