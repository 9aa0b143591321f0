"""The one HTML-to-text converter: every route (JSONL, crawl, exports, S3, MongoDB, dumps) uses it.

The text is markdown-ish: paragraphs separated by blank lines, headings levelled (`#` .. `######`),
list items as `- ` or `1. ` (nested ones indented), quotes as `> `, table rows as `cell | cell`,
code in ``` fences with its whitespace exact, inline code in backticks, links as their text.
Page chrome that markup itself marks (navigation, footers, forms, share and subscribe widgets,
hidden elements) is dropped; text-level chrome is the cleaning rules' job (`twin/cleaning.py`).
Every walk is iterative, so markup nested thousands deep cannot exhaust the stack.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

# known article-body containers, best first: (classes the element must have, or its itemprop)
CONTENT_CONTAINERS: tuple[frozenset[str] | str, ...] = (
    frozenset({"available-content"}), frozenset({"body", "markup"}), "articleBody", frozenset({"entry-content"}),
    frozenset({"post-content"}), frozenset({"article-content"}), frozenset({"article-body"}),
    frozenset({"post-body"}), frozenset({"story-body"}), frozenset({"gh-content"}))
_SKIPPED = frozenset({"script", "style", "noscript", "template", "head", "title", "meta", "link"})
_CHROME_TAGS = frozenset({"svg", "nav", "footer", "aside", "form", "button", "header", "iframe", "object", "embed",
                          "video", "audio", "canvas", "picture", "img", "input", "select", "textarea",
                          "dialog", "source"})
_BOILERPLATE_CLASS = re.compile(
    r"(?:^|[\s_-])(?:share|sharing|social|subscribe|subscription|newsletter|signup|related|recommended|"
    r"comments?|responses|footer|header|navbar|nav|menu|sidebar|breadcrumbs?|promo|cta|advert|ads|banner|"
    r"cookie|paywall|byline|author|meta|tags|ufi|button|btn|modal|popup|speechify-ignore)(?:$|[\s_-])",
    re.I)
_BOILERPLATE_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "dialog",
                                "button"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCK_TAGS = frozenset({"p", "div", "section", "article", "main", "figure", "figcaption", "dl", "dt", "dd",
                         "address", "details", "summary", "center", "hgroup", "hr", "body", "html"})
_LANGUAGE = re.compile(r"^(?:language|lang)-([\w+#.-]+)$")


def parse_html(text: str) -> BeautifulSoup:
    return BeautifulSoup(text.replace("\x00", ""), "html.parser")


def html_to_text(markup: str) -> str:
    """The text of an HTML page or fragment: its content root, without marked-up chrome."""
    soup = parse_html(markup)
    for tag in soup.find_all(list(_SKIPPED)):
        if not tag.decomposed:
            tag.decompose()
    root = content_root(soup)
    strip_boilerplate(root)
    return render(root)


def content_root(soup: BeautifulSoup) -> Tag:
    """The element holding the article body: known body containers, then <article>, <main>, <body>."""
    found: dict[int, list[Tag]] = {}
    for tag in soup.find_all(True):  # one pass: CSS selectors are slow on pages nested very deep
        classes = set(tag.get("class") or [])
        for rank, container in enumerate(CONTENT_CONTAINERS):
            if (container <= classes) if isinstance(container, frozenset) else tag.get("itemprop") == container:
                found.setdefault(rank, []).append(tag)
    for rank in sorted(found):
        for element in found[rank]:
            if element.get_text(strip=True):
                return element
    articles = soup.find_all("article")
    if articles:
        return max(articles, key=lambda tag: len(tag.get_text(" ", strip=True)))
    main = soup.find("main") or soup.find(True, attrs={"role": "main"})
    if isinstance(main, Tag):
        return main
    return soup.body if soup.body is not None else soup


def strip_boilerplate(root: Tag) -> None:
    """Remove marked-up chrome below `root` in one top-down pass."""
    for tag in root.find_all(list(_SKIPPED | _CHROME_TAGS)):
        if not tag.decomposed:
            tag.decompose()
    total = len(root.get_text(" ", strip=True))
    stack = [child for child in root.children if isinstance(child, Tag)]
    while stack:
        tag = stack.pop()
        if tag.name in ("pre", "code"):
            continue  # inside code, class names like "hljs-comment" are syntax colouring
        # headings are text whatever their class ("header-anchor"); and an unclosed
        # <div class="nav"> can swallow the whole page, so never drop most of the text
        if (tag.name not in _HEADINGS and _is_boilerplate(tag)
                and len(tag.get_text(" ", strip=True)) * 2 < total):
            tag.decompose()
            continue
        stack.extend(child for child in tag.children if isinstance(child, Tag))


def inline_text(element: Tag) -> str:
    """An element's text on one line (titles, headings): whitespace collapsed."""
    return " ".join(element.get_text(" ").replace("\x00", "").split())


def render(root: Tag) -> str:
    """The text of an already stripped tree (see the module docstring for its shape)."""
    writer = _Writer()
    # items are a node to visit, or a callable that closes what a tag opened
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Tag):
            stack.extend(_open(node, writer))
        elif isinstance(node, (Comment, Declaration, Doctype, ProcessingInstruction)):
            continue
        elif isinstance(node, NavigableString):
            writer.text(str(node))
        elif callable(node):  # checked last: a bs4 Tag is callable too (it means find_all)
            node()
    writer.flush()
    return writer.result()


def _is_boilerplate(tag: Tag) -> bool:
    names = " ".join(tag.get("class") or []) + " " + str(tag.get("id") or "")
    if _BOILERPLATE_CLASS.search(names):
        return True
    if str(tag.get("role", "")).lower() in _BOILERPLATE_ROLES:
        return True
    style = str(tag.get("style", "")).replace(" ", "").lower()
    return tag.get("aria-hidden") == "true" or tag.has_attr("hidden") or "display:none" in style


class _Writer:
    """Collects rendered blocks; `group` joins list items and table rows with single newlines."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str | None, int, str]] = []  # (group, quote depth, text)
        self.inline: list[str] = []
        self.frames: list[dict[str, Any]] = [{"kind": "p"}]
        self.lists: list[list[Any]] = []  # [tag name, items so far]
        self.quote = 0

    def text(self, value: str) -> None:
        self.inline.append(re.sub(r"\s+", " ", value))

    def raw(self, value: str) -> None:
        self.inline.append(value)

    def push(self, frame: dict[str, Any]) -> None:
        self.flush()
        self.frames.append(frame)

    def pop(self) -> None:
        self.flush()
        if len(self.frames) > 1:
            self.frames.pop()

    def flush(self) -> None:
        text = "".join(self.inline)
        self.inline = []
        lines = [" ".join(line.split()) for line in text.split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            return
        frame = self.frames[-1]
        kind = frame["kind"]
        group: str | None = None
        if kind == "h":
            rendered = "#" * frame["level"] + " " + " ".join(lines)
        elif kind == "li":
            indent = "  " * frame["depth"]
            if not frame.get("started"):
                frame["started"] = True
                first, rest = indent + frame["marker"] + lines[0], lines[1:]
            else:
                first, rest = indent + "  " + lines[0], lines[1:]
            rendered = "\n".join([first, *(indent + "  " + line for line in rest)])
            group = "list"
        elif kind == "row":
            cells = [" ".join(cell.split()) for cell in " ".join(lines).split("\ue000")]
            rendered = " | ".join(cell for cell in cells if cell)
            group = "table"
            if not rendered:
                return
        else:
            rendered = "\n".join(lines)
        self.blocks.append((group, self.quote, rendered))

    def code(self, value: str, language: str) -> None:
        self.flush()
        value = value.strip("\n")
        if value.strip():  # inside a quote, code is quoted too, as markdown writes it
            self.blocks.append((None, self.quote, f"```{language}\n{value}\n```"))

    def result(self) -> str:
        parts: list[str] = []
        previous: tuple[str | None, int] | None = None
        for group, quote, text in self.blocks:
            if quote:
                text = "\n".join(("> " * quote + line).rstrip() for line in text.split("\n"))
            if parts:
                joined = group is not None and previous == (group, quote)
                parts.append("\n" if joined else "\n\n")
            parts.append(text)
            previous = (group, quote)
        return "".join(parts).replace("\x00", "").strip()


def _open(tag: Tag, out: _Writer) -> list[Any]:
    """Start what `tag` stands for; returns what to visit next, last item first."""
    children = list(reversed(list(tag.children)))
    name = tag.name
    if name in _SKIPPED or name in _CHROME_TAGS:
        return []
    if name == "pre":
        out.code(_preformatted(tag), _language(tag))
        return []
    if name == "br":
        out.raw("\n")
        return []
    if name == "code":
        out.raw("`" + " ".join(tag.get_text().split()) + "`")
        return []
    if name in _HEADINGS:
        out.push({"kind": "h", "level": int(name[1])})
        return [out.pop, *children]
    if name in ("ul", "ol"):
        out.flush()
        out.lists.append([name, 0])
        return [_closer(out, lambda: out.lists.pop()), *children]
    if name == "li":
        if not out.lists:
            out.lists.append(["ul", 0])
            return [_closer(out, lambda: out.lists.pop()), _closer(out, out.pop),
                    *_li(tag, out, children)]
        return [out.pop, *_li(tag, out, children)]
    if name == "blockquote":
        out.flush()
        out.quote += 1
        return [_closer(out, lambda: setattr(out, "quote", out.quote - 1)), *children]
    if name == "table":
        out.flush()
        return [out.flush, *children]
    if name == "tr":
        out.push({"kind": "row"})
        return [out.pop, *children]
    if name in ("td", "th"):
        return [lambda: out.raw("\ue000"), *children]
    if name in _BLOCK_TAGS:
        out.flush()
        return [out.flush, *children]
    return children  # inline: its text joins the current block


def _li(tag: Tag, out: _Writer, children: list[Any]) -> list[Any]:
    listing = out.lists[-1]
    listing[1] += 1
    marker = f"{listing[1]}. " if listing[0] == "ol" else "- "
    out.push({"kind": "li", "depth": len(out.lists) - 1, "marker": marker})
    return children


def _closer(out: _Writer, action: Callable[[], object]) -> Callable[[], None]:
    def close() -> None:
        out.flush()
        action()
    return close


def _preformatted(element: Tag) -> str:
    """Code text with its whitespace intact (Medium writes line breaks in code as `<br>`)."""
    parts = []
    for piece in element.descendants:
        if isinstance(piece, Tag) and piece.name == "br":
            parts.append("\n")
        elif isinstance(piece, NavigableString) and not isinstance(
                piece, (Comment, Declaration, Doctype, ProcessingInstruction)):
            parts.append(str(piece))
    return "".join(parts).replace("\x00", "")


def _language(pre: Tag) -> str:
    for element in (pre, pre.find("code")):
        if isinstance(element, Tag):
            for name in element.get("class") or []:
                if match := _LANGUAGE.match(str(name)):
                    return match.group(1)
    return ""
