"""Cleaned documents → passages: the author's own text that becomes the answer of one example.

Articles are cut at paragraph boundaries into passages of about `target_words`, never across a
heading, and each passage remembers the heading it sits under. Posts are one passage each. Code
files are cut at blank lines into passages of at most `max_code_lines` lines, whitespace intact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.+)$")


@dataclass(frozen=True)
class SourceDocument:
    """One cleaned document of the snapshot a dataset is made from."""

    document_id: int
    url: str
    title: str
    category: str  # article | post | repository
    platform: str
    content: str
    content_hash: str
    author: str = ""


@dataclass(frozen=True)
class Passage:
    document: SourceDocument
    index: int  # position within the document
    text: str
    heading: str  # the section heading it sits under ("" when none)


@dataclass(frozen=True)
class PassagePolicy:
    target_words: int = 110
    max_words: int = 170
    min_words: int = 25
    max_code_lines: int = 40
    min_code_lines: int = 4

    def signature(self) -> dict[str, int]:
        return {
            "target_words": self.target_words, "max_words": self.max_words, "min_words": self.min_words,
            "max_code_lines": self.max_code_lines, "min_code_lines": self.min_code_lines,
        }


def split_passages(document: SourceDocument, policy: PassagePolicy = PassagePolicy()) -> list[Passage]:
    if document.category == "repository":
        texts = [(text, "") for text in _code_passages(document.content, policy)]
    elif document.category == "post":
        texts = [(document.content.strip(), "")] if _words(document.content) >= policy.min_words else []
    else:
        texts = _prose_passages(document.content, policy)
    return [Passage(document, index, text, heading) for index, (text, heading) in enumerate(texts)]


def _words(text: str) -> int:
    return len(text.split())


def _prose_passages(content: str, policy: PassagePolicy) -> list[tuple[str, str]]:
    passages: list[tuple[str, str]] = []
    heading = ""
    current: list[str] = []

    def flush() -> None:
        text = "\n\n".join(current).strip()
        if text and _words(text) >= policy.min_words:
            passages.append((text, heading))
        elif text and passages and passages[-1][1] == heading:  # a short tail joins the passage before
            previous, previous_heading = passages.pop()
            passages.append((f"{previous}\n\n{text}", previous_heading))
        current.clear()

    for paragraph in (part.strip() for part in content.split("\n\n")):
        if not paragraph:
            continue
        match = _HEADING.match(paragraph)
        if match:
            flush()
            heading = match.group(2).strip()
            continue
        if current and _words("\n\n".join(current)) + _words(paragraph) > policy.max_words:
            flush()
        current.append(paragraph)
        if _words("\n\n".join(current)) >= policy.target_words:
            flush()
    flush()
    return passages


def _code_passages(content: str, policy: PassagePolicy) -> list[str]:
    lines = content.splitlines()
    passages: list[str] = []
    start = 0
    while start < len(lines):
        end = min(start + policy.max_code_lines, len(lines))
        if end < len(lines):  # prefer to end at a blank line in the second half of the window
            for cut in range(end, start + policy.max_code_lines // 2, -1):
                if not lines[cut - 1].strip():
                    end = cut
                    break
        block = "\n".join(lines[start:end]).strip("\n")
        if sum(1 for line in block.splitlines() if line.strip()) >= policy.min_code_lines:
            passages.append(block)
        start = end
    return passages
