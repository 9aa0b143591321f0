"""Cleaning raw content into the text we fine-tune on and embed; rules differ per category.

Prose (articles, posts) loses HTML, markdown decoration and emoji but keeps its paragraphs and
headings, so chunking can follow them. Code keeps every space and newline.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from twin.documents import Category

CLEANER_VERSION = "clean-v1"

_HTML_HINT = re.compile(r"<\s*/?\s*(p|div|br|h[1-6]|li|ul|ol|article|section|span|a|img|strong|em|b|i|blockquote|pre|table)\b[^>]*>", re.I)
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0e\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)
_EMOJI_RUN = re.compile(rf"[ \t]*(?:{_EMOJI.pattern})+")  # with the space before it
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200c\u2060\ufeff]")
_FENCE = re.compile(r"(^```[^\n]*\n.*?^```[ \t]*$)", re.M | re.S)
_MARKDOWN_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)"), r"\1"),  # inline links keep their text
    (re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M), ""),  # reference link definitions
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)"), r"\1"),  # _italic_
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code keeps its text
    (re.compile(r"^\s{0,3}(?:[-*_]\s*){3,}$", re.M), ""),  # horizontal rules
    (re.compile(r"^(#{1,6})[ \t]*(.+?)[ \t]*#*[ \t]*$", re.M), r"\1 \2"),  # tidy headings
]


def clean_document(category: Category, content: str) -> str:
    """The cleaned text of one document; empty when nothing readable is left."""
    if category is Category.REPOSITORY:
        return clean_code(content)
    return clean_prose(content)


def clean_title(title: str) -> str:
    return _collapse_spaces(_EMOJI_RUN.sub("", html.unescape(_CONTROL.sub("", title)))).strip()


def clean_prose(text: str) -> str:
    """Readable text with paragraphs (blank lines), markdown headings and fenced code kept."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if _HTML_HINT.search(text):
        text = html_to_text(text)
    else:
        text = html.unescape(text)
    parts = _FENCE.split(text)
    cleaned = [part if _FENCE.fullmatch(part) else _clean_markup(part) for part in parts]
    text = "\n\n".join(part.strip("\n") for part in cleaned if part.strip())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def clean_code(text: str) -> str:
    """Source code with its whitespace intact: only line endings and NUL bytes change."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.strip("\n")


def html_to_text(markup: str) -> str:
    """Text of an HTML fragment with block elements turned into paragraphs."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def _clean_markup(text: str) -> str:
    for pattern, replacement in _MARKDOWN_RULES:
        text = pattern.sub(replacement, text)
    text = _EMOJI_RUN.sub("", text)
    lines = [_collapse_spaces(line).strip() for line in text.split("\n")]
    return "\n".join(lines)


def _collapse_spaces(text: str) -> str:
    return re.sub(r"[ \t\u00a0\u2000-\u200a\u202f\u3000]+", " ", text)


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "section", "article", "blockquote", "pre", "ul", "ol", "table", "tr",
              "header", "footer", "figure", "main", "aside", "nav"}
    _SKIP = {"script", "style", "noscript", "head", "template", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK or re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)
