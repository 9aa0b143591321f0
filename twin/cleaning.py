"""Cleaning raw content into the text we fine-tune on and embed: the one place for its rules.

Prose (articles, posts) loses HTML (through the one converter, `twin/markup.py`), markdown
decoration, emoji, zero-width and bidi control characters, is NFKC-folded (styled letters such as
𝗯𝗼𝗹𝗱 become plain ones), and loses page chrome: the known chrome of the platforms we read
(share bars, subscribe prompts, comment sections, footers, notices, bylines, counters, a repeated
title) and lines the repeated-line detector found on many of one twin's pages of one site. It
keeps its paragraphs and headings, so chunking can follow them. Code keeps every character.
Queries go through `clean_prose` too, so they are folded like the documents.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from twin.documents import Category
from twin.markup import html_to_text

CLEANER_VERSION = "clean-v2"
# A line on at least this share of one site's documents of a twin (and on at least
# REPEATED_MIN_DOCUMENTS of them) is that site's chrome; bench/cleaning.py shows the data behind it.
REPEATED_MIN_SHARE = 0.4
REPEATED_MIN_DOCUMENTS = 3
SAMPLE_LINES = 5
_TAIL_FROM = 0.5  # a "comments" / "related posts" marker in the second half cuts everything after it

_HTML_HINT = re.compile(r"<\s*/?\s*(p|div|br|h[1-6]|li|ul|ol|article|section|span|a|img|strong|em|b|i|blockquote|"
                        r"pre|table|nav|header|footer|main|body|html)\b[^>]*>", re.I)
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0e\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)
_EMOJI_RUN = re.compile(rf"[ \t]*(?:{_EMOJI.pattern})+")  # with the space before it
# C0 controls but tab/newline, DEL, zero-width characters, bidi marks/embeddings/isolates, BOM
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064"
                      r"\u2066-\u2069\u061c\ufeff\u00ad]")
_FENCE = re.compile(r"(^```[^\n]*\n.*?^```[ \t]*$)", re.M | re.S)
_INLINE_CODE = re.compile(r"(`[^`\n]+`)")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
_TABLE_ROW = re.compile(r"^\s*\|(.*\|.*)\|\s*$")
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
    (re.compile(r"^\s{0,3}(?:[-*_]\s*){3,}$", re.M), ""),  # horizontal rules
    (re.compile(r"^(#{1,6})[ \t]*(.+?)[ \t]*#*[ \t]*$", re.M), r"\1 \2"),  # tidy headings
]

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_SHARE_TARGETS = r"(?:twitter|x|facebook|linkedin|email|e-mail|reddit|whatsapp|telegram|pocket|hacker news|" \
                 r"mastodon|bluesky|threads|copy link|pinterest|print)"
# (family, pattern matched against a whole normalized line, applies to headings too)
_CHROME_RULES: list[tuple[str, str, bool]] = [
    ("share", r"share|share this:?|like this:?|like loading(?:…|\.\.\.)?|share (?:this|the) (?:post|article|story|page)|share on " + _SHARE_TARGETS +
     r"|share via .{1,30}|" + _SHARE_TARGETS + r"|note|notes|other|more|tweet|pin it|"
     r"(?:share:?\s*)?(?:" + _SHARE_TARGETS + r"[\s,·•∙|/]*){2,}", True),
    ("subscribe", r"subscribe|subscribe now|subscribed|sign in|sign up|log in|sign up for free|"
     r"subscribe for free|ready for more\??|type your email(?:…|\.\.\.)?|get the app|open in app|follow|"
     r"following|member-only story|members-only story|become a member|join medium.{0,60}|upgrade to paid|"
     r"start writing|start your own (?:substack|newsletter).{0,40}|"
     r"thanks for reading .{0,120}(?:subscribe|support my work|new posts).{0,120}|"
     r"(?:subscribe|sign up) (?:to|for) .{0,100}(?:newsletter|new posts|updates|inbox|free).{0,80}|"
     r"get (?:new posts|my newsletter|the newsletter|new articles).{0,80}|sign up for more like this\.?|"
     r"(?:enter|type) your email.{0,60}|no spam.{0,60}unsubscribe.{0,40}|"
     r"get an email whenever .{0,100}|.{0,80}in your inbox.{0,10}(?:subscribe|sign up).{0,40}", True),
    ("comments", r"discussion about this (?:post|article|episode)|discussion|comments?|\d+ comments?|"
     r"no comments(?: yet)?\.?|leave a (?:comment|reply)|write a (?:comment|response)(?:…|\.\.\.)?|"
     r"responses?(?: \(\d+\))?|\d+ responses?|restacks?|\d+ restacks?|top|latest|cancel reply|post comment|"
     r"load more comments|show more replies|reply|\d+ repl(?:y|ies)|view all comments|"
     r"join the discussion.{0,40}|what do you think\? leave a comment.{0,40}", True),
    ("counter", r"\d[\d,.]*k?|(?:\d[\d,.]*k? (?:likes?|comments?|claps?|restacks?|shares?|reposts?)[\s·•∙,|]*){1,4}|\d[\d,.]*k? (?:likes?|claps?|views?|reads|hearts|reactions|shares)|like|liked|"
     r"listen|clap|.{0,60}\b\d+ min(?:ute)? read\b.{0,60}|reading time:? \d+ min(?:utes)?\.?", False),
    ("footer", r"©.{0,160}|\(c\) \d{4}.{0,120}|copyright (?:©\s*)?\d{4}.{0,120}|all rights reserved\.?|"
     r"privacy(?: policy)?(?: [·∙|•] .{0,80})?|terms(?: of (?:service|use))?(?: [·∙|•] .{0,80})?|"
     r"collection notice|substack is the home for great (?:culture|writing).{0,40}|"
     r"(?:proudly )?powered by (?:ghost|wordpress|hugo|jekyll|substack|medium|quarto).{0,60}|"
     r"(?:built|made|generated|created) with (?:hugo|jekyll|quarto|ghost|wordpress|hexo|gatsby).{0,60}|"
     r"theme (?:by|:) .{1,60}|rss(?: feed)?|atom feed|subscribe via rss|back to top|↑|↑ back to top|"
     r"help status about careers press blog privacy terms.{0,40}", True),
    ("notice", r"this site requires javascript.{0,200}|please (?:turn on|enable) javascript.{0,160}|"
     r"javascript is (?:disabled|required).{0,160}|you need to enable javascript.{0,80}|"
     r"(?:we|this (?:site|website)) uses? cookies.{0,240}|accept(?: all)?(?: cookies)?|reject(?: all)?|"
     r"cookie (?:settings|policy|preferences)|manage cookies|got it", True),
    ("navigation", r"(?:← |« |‹ )?(?:previous|next|older|newer|prev)(?: post| article| story| page| posts| "
     r"entries)?(?: →| »| ›)?|previousnext|previous next|← .{1,120}|.{1,120} →|"
     r"(?:previous|next|older|newer) (?:post|article|story):? .{1,120}|skip to (?:main )?content|"
     r"read more|continue reading|read next|keep reading|more from .{0,80}|recommended from medium|"
     r"see all from .{0,60}|related (?:posts|articles|reading|stories)|you (?:may|might) also (?:like|enjoy).{0,20}|"
     r"home|about|archive|archives|menu|search|tags?:.{0,160}|categories:.{0,160}|filed under:?.{0,120}|"
     r"posted in .{0,100}", False),
    ("byline", r"written by .{1,80}|published in .{1,80}|posted (?:by|on) .{1,80}|edited by .{1,60}|"
     r"about the author|author|authors|published|modified|updated|date|\d[\d.,]*k? followers|follow(?: me| us)?(?: on .{1,30})?|follow @\S+", False),
    ("dateline", rf"(?:published |updated |posted )?(?:on )?(?:{_MONTH} \d{{1,2}},? \d{{4}}|\d{{1,2}} {_MONTH},? \d{{4}}|"
     rf"\d{{4}}-\d{{2}}-\d{{2}})(?: [·∙|•] .{{0,60}})?", False),
]
_RULES = [(family, re.compile(pattern, re.I), headings) for family, pattern, headings in _CHROME_RULES]
# markers after which a page holds other people's text (comments) or other posts (related)
_TAIL_MARKERS = re.compile(
    r"discussion about this (?:post|article|episode)|\d* ?comments?|\d* ?responses?(?: \(\d+\))?|"
    r"leave a (?:comment|reply)|related (?:posts|articles|reading|stories)|more from .{0,80}|"
    r"recommended from medium|you (?:may|might) also (?:like|enjoy).{0,20}|ready for more\??", re.I)
_CHROME_HEADINGS = frozenset({"share", "subscribe", "comments", "responses", "restacks"})
_BY_NAME = re.compile(r"[Bb]y [A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,3}(?: [·∙|•-] .{0,60})?")
_BULLET = re.compile(r"^(?:>\s*)*(?:[-*+•·]\s+|\d{1,3}[.)]\s+)?")


@dataclass
class Cleaned:
    """A document's cleaned text and what cleaning removed from it (lines by family, samples)."""

    text: str
    removed: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    @property
    def removed_lines(self) -> int:
        return sum(self.removed.values())

    def reason_empty(self) -> str:
        """Why nothing is left, to follow "content": only chrome (and which), or no readable text."""
        if self.removed:
            families = ", ".join(f"{family} {count}" for family, count in sorted(self.removed.items()))
            return f"is only page chrome, nothing of the author's text ({families} lines removed)"
        return "has no readable text (only markup, emoji or whitespace)"


def clean_document(category: Category, content: str, *, title: str = "", author: str = "",
                   repeated: Iterable[str] = ()) -> str:
    """The cleaned text of one document; empty when nothing readable is left."""
    return clean(category, content, title=title, author=author, repeated=repeated).text


def clean(category: Category, content: str, *, title: str = "", author: str = "",
          repeated: Iterable[str] = ()) -> Cleaned:
    """The cleaned text and a record of the removed chrome; `repeated` holds `line_key`s to drop."""
    if category is Category.REPOSITORY:
        return Cleaned(clean_code(content))
    # a post's title is its own first line (LinkedIn, X): only an article repeats a separate title
    title = title if category is Category.ARTICLE else ""
    return strip_chrome(clean_prose(content), title=title, author=author, repeated=frozenset(repeated))


def clean_title(title: str) -> str:
    title = _fold(html.unescape(_CONTROL.sub("", title)))
    return _collapse_spaces(_EMOJI_RUN.sub("", title)).strip()


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


def line_key(line: str) -> str:
    """A line as the repeated-line detector compares it: no list or quote marker, case or spacing."""
    return " ".join(_BULLET.sub("", line.strip()).lower().split())


def detector_lines(text: str) -> set[str]:
    """The `line_key`s of a cleaned text that the repeated-line detector counts (no code, headings)."""
    keys = set()
    for part in _FENCE.split(text):
        if _FENCE.fullmatch(part):
            continue
        for line in part.split("\n"):
            key = line_key(line)
            if key and not line.lstrip().startswith("#"):
                keys.add(key)
    return keys


def repeated_lines(documents: list[set[str]]) -> frozenset[str]:
    """Lines on at least REPEATED_MIN_SHARE of the documents (and REPEATED_MIN_DOCUMENTS of them)."""
    if len(documents) < REPEATED_MIN_DOCUMENTS:
        return frozenset()
    needed = max(REPEATED_MIN_DOCUMENTS, math.ceil(REPEATED_MIN_SHARE * len(documents)))
    frequency = Counter(key for keys in documents for key in keys)
    return frozenset(key for key, count in frequency.items() if count >= needed)


def strip_chrome(text: str, *, title: str = "", author: str = "",
                 repeated: frozenset[str] = frozenset()) -> Cleaned:
    """`text` (cleaned prose) without chrome lines; code fences are never touched."""
    result = Cleaned("")
    wanted_title = line_key(clean_title(title)) if title else ""
    name = line_key(clean_title(author)) if author else ""
    total = max(len(text), 1)
    blocks = [block for part in _FENCE.split(text)
              for block in ([part] if _FENCE.fullmatch(part) else part.split("\n\n"))]
    kept_blocks: list[str] = []
    position = 0
    for index, block in enumerate(blocks):
        at = position / total
        position += len(block) + 2
        if _FENCE.fullmatch(block):
            kept_blocks.append(block)
            continue
        lines = block.split("\n")
        kept: list[str] = []
        for number, line in enumerate(lines):
            family = _chrome_family(line, wanted_title if index < 4 else "", name, repeated)
            if family is None:
                kept.append(line)
                continue
            _record(result, family, line)
            if at >= _TAIL_FROM and _TAIL_MARKERS.fullmatch(line_key(line.strip().lstrip("#")).strip(" :")):
                rest = [item for later in blocks[index + 1:] for item in later.split("\n") if item.strip()]
                for item in [*lines[number + 1:], *rest]:
                    if item.strip():
                        _record(result, "tail", item)
                result.text = _joined(kept_blocks + ["\n".join(kept)])
                return result
        if any(line.strip() for line in kept):
            kept_blocks.append("\n".join(kept))
    result.text = _joined(kept_blocks)
    return result


def _chrome_family(line: str, title: str, author: str, repeated: frozenset[str]) -> str | None:
    stripped = line.strip()
    if not stripped or len(stripped) > 400:
        return None
    heading = stripped.startswith("#")
    key = line_key(stripped.lstrip("#"))
    if not key:
        return None
    if title and key == title:
        return "title"
    if author and (key == author or key.startswith(author + " ·") or key.startswith(author + " |")):
        return "byline"
    if not heading and _BY_NAME.fullmatch(_BULLET.sub("", stripped)):
        return "byline"
    candidate = key.strip(" :·•∙|")
    if not re.search(r"[\w`]", candidate):
        return "separator"  # a line of bullets or dots between chrome items
    # an author's heading may well be "Discussion" or "Notes": one-word headings are chrome only here
    heading_rules = not heading or " " in candidate or candidate in _CHROME_HEADINGS
    for family, pattern, on_headings in _RULES:
        if (on_headings and heading_rules or not heading) and pattern.fullmatch(candidate):
            return family
    if not heading and key in repeated:
        return "repeated"
    return None


def _record(result: Cleaned, family: str, line: str) -> None:
    result.removed[family] += 1
    sample = " ".join(line.split())[:80]
    if len(result.samples) < SAMPLE_LINES and sample not in result.samples:
        result.samples.append(sample)


def _joined(blocks: list[str]) -> str:
    return "\n\n".join(block.strip("\n") for block in blocks if block.strip()).strip()


def _clean_markup(text: str) -> str:
    for pattern, replacement in _MARKDOWN_RULES:
        text = pattern.sub(replacement, text)
    text = "".join(part if _INLINE_CODE.fullmatch(part) else _fold(part) for part in _INLINE_CODE.split(text))
    text = _INLINE_CODE.sub(lambda match: match.group(0)[1:-1], text)  # inline code keeps its text
    text = _EMOJI_RUN.sub("", text)
    lines = []
    for line in text.split("\n"):
        if _TABLE_SEPARATOR.fullmatch(line) and "|" in line:
            continue
        if row := _TABLE_ROW.fullmatch(line):
            line = " | ".join(cell.strip() for cell in row.group(1).split("|"))
        lines.append(_collapse_spaces(line).strip())
    return "\n".join(lines)


def _fold(text: str) -> str:
    """NFKC: styled letters (𝗯𝗼𝗹𝗱, 𝘪𝘵𝘢𝘭𝘪𝘤), fullwidth forms and ligatures become plain letters."""
    return unicodedata.normalize("NFKC", text)


def _collapse_spaces(text: str) -> str:
    return re.sub(r"[ \t\u00a0\u2000-\u200a\u202f\u3000]+", " ", text)
