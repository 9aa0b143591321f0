"""Chunking cleaned documents for retrieval; every chunk fits the embedding model's token window.

Articles group paragraphs inside their section, posts stay whole or become short sentence
windows, and code splits at top-level definitions (with their leading comments).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from twin.documents import Category

CHUNKER_VERSION = "chunk-v1"
TokenCounter = Callable[[list[str]], list[int]]
"""Counts tokens (without special tokens) for each text of a list."""

PROSE_FILE_SUFFIXES = (".md", ".markdown", ".rst", ".txt")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_CODE_BOUNDARY = re.compile(
    r"^(?:(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:def|class|function\*?)\s"
    r"|(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?(?:unsafe\s+)?(?:fn|struct|enum|trait|impl|mod|type|const|static)\b"
    r"|impl\b|@|(?:export\s+)?(?:const|let|var)\s+\w+\s*=\s*(?:async\s*)?(?:function|\()"
    r"|module\.exports|describe\(|test\(|it\()"
)
_CODE_LEAD = re.compile(r"^\s*(?:#|//|/\*|\*|@|\"\"\"|''')")


@dataclass(frozen=True)
class Chunk:
    position: int
    text: str
    token_count: int


@dataclass(frozen=True)
class ChunkingPolicy:
    """Token limits: `max_tokens` is the model window (hard), the targets are what we aim for."""

    max_tokens: int
    article_target_tokens: int = 200
    post_window_tokens: int = 128
    code_target_tokens: int = 200

    @property
    def signature(self) -> str:
        return (f"{CHUNKER_VERSION}:max{self.max_tokens}:a{self.article_target_tokens}"
                f":p{self.post_window_tokens}:c{self.code_target_tokens}")


def chunk_document(
    category: Category, content: str, path_or_url: str, count: TokenCounter, policy: ChunkingPolicy
) -> list[Chunk]:
    """Split one cleaned document into ordered chunks of at most `policy.max_tokens` tokens."""
    if category is Category.ARTICLE:
        pieces = _chunk_article(content, count, policy)
    elif category is Category.POST:
        pieces = _chunk_post(content, count, policy)
    elif path_or_url.lower().endswith(PROSE_FILE_SUFFIXES):
        pieces = _chunk_article(content, count, policy)
    else:
        pieces = _chunk_code(content, count, policy)
    texts = [piece for piece in pieces if piece.strip()]
    counts = count(texts) if texts else []
    chunks: list[Chunk] = []
    for text, tokens in zip(texts, counts, strict=False):
        for part, part_tokens in _enforce_max(text, tokens, count, policy.max_tokens):
            chunks.append(Chunk(position=len(chunks), text=part, token_count=part_tokens))
    return chunks


def _chunk_article(content: str, count: TokenCounter, policy: ChunkingPolicy) -> list[str]:
    """Paragraphs grouped up to the target, never across a heading; headings lead their section."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", content) if p.strip()]
    units: list[tuple[str, bool]] = []  # (text, starts a section)
    for paragraph in paragraphs:
        is_heading = paragraph.startswith("#") and "\n" not in paragraph
        units.append((paragraph, is_heading))
    return _group(units, count, policy.article_target_tokens, "\n\n")


def _chunk_post(content: str, count: TokenCounter, policy: ChunkingPolicy) -> list[str]:
    """A post is one chunk when it fits; otherwise overlapping windows of whole sentences."""
    if count([content])[0] <= policy.max_tokens:
        return [content]
    sentences = split_sentences(content)
    sizes = count(sentences)
    windows: list[str] = []
    start = 0
    while start < len(sentences):
        end, total = start, 0
        while end < len(sentences) and (end == start or total + sizes[end] <= policy.post_window_tokens):
            total += sizes[end]
            end += 1
        windows.append(" ".join(sentences[start:end]))
        if end >= len(sentences):
            break
        start = end - 1 if end - 1 > start else end  # one sentence of overlap
    return windows


def _chunk_code(content: str, count: TokenCounter, policy: ChunkingPolicy) -> list[str]:
    """Top-level definitions (with the comments above them) grouped up to the target."""
    lines = content.split("\n")
    starts = [0]
    for index, line in enumerate(lines):
        if index == 0 or not _CODE_BOUNDARY.match(line):
            continue
        if lines[index - 1].startswith("@"):
            continue  # a decorator already opened this block
        start = index
        while start > starts[-1] + 1 and _CODE_LEAD.match(lines[start - 1]) and lines[start - 1][:1] in "#/*@ ":
            start -= 1
        if start > starts[-1]:
            starts.append(start)
    blocks = ["\n".join(lines[a:b]) for a, b in zip(starts, starts[1:] + [len(lines)], strict=False)]
    units = [(block, False) for block in blocks]
    return [piece.strip("\n") for piece in _group(units, count, policy.code_target_tokens, "\n")]


def _group(units: list[tuple[str, bool]], count: TokenCounter, target: int, joiner: str) -> list[str]:
    """Greedy grouping of consecutive units up to `target` tokens; a section start opens a group.

    A heading always stays with what follows it; oversize groups are split later to fit the window.
    """
    if not units:
        return []
    sizes = count([text for text, _ in units])
    groups: list[str] = []
    current: list[str] = []
    current_tokens = 0
    heading_only = False
    for (text, starts_section), tokens in zip(units, sizes, strict=False):
        fits = current_tokens + tokens <= target
        if current and not heading_only and (not fits or starts_section):
            groups.append(joiner.join(current))
            current, current_tokens = [], 0
        current.append(text)
        current_tokens += tokens
        heading_only = starts_section and len(current) == 1
    if current:
        groups.append(joiner.join(current))
    return groups


def _enforce_max(text: str, tokens: int, count: TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    """Split text over the window into its smallest needed parts, then re-pack them greedily."""
    if tokens <= max_tokens:
        return [(text, tokens)]
    packed: list[tuple[str, int]] = []
    for joiner, atom, size in _atoms(text, count, max_tokens, ""):
        if packed and packed[-1][1] + size <= max_tokens:
            candidate = packed[-1][0] + joiner + atom
            candidate_tokens = count([candidate])[0]
            if candidate_tokens <= max_tokens:
                packed[-1] = (candidate, candidate_tokens)
                continue
        packed.append((atom, size))
    return packed


def _atoms(text: str, count: TokenCounter, max_tokens: int, joiner_before: str) -> list[tuple[str, str, int]]:
    """(joiner before it, text, tokens) pieces that each fit: blank lines, lines, sentences, words."""
    parts, joiner = _split_once(text)
    atoms: list[tuple[str, str, int]] = []
    for index, (part, size) in enumerate(zip(parts, count(parts), strict=False)):
        before = joiner_before if index == 0 else joiner
        if size <= max_tokens:
            atoms.append((before, part, size))
        else:
            atoms.extend(_atoms(part, count, max_tokens, before))
    return atoms


def _split_once(text: str) -> tuple[list[str], str]:
    """The coarsest split of `text` into at least two non-empty parts, with its joiner."""
    splitters = ((_split_blank_lines, "\n\n"), (_split_lines, "\n"), (split_sentences, " "),
                 (_split_words, " "))
    for splitter, joiner in splitters:
        parts = [part for part in splitter(text) if part.strip()]
        if len(parts) > 1:
            return parts, joiner
    middle = len(text) // 2
    return [text[:middle], text[middle:]], ""


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _split_blank_lines(text: str) -> list[str]:
    return re.split(r"\n\s*\n", text)


def _split_lines(text: str) -> list[str]:
    return text.split("\n")


def _split_words(text: str) -> list[str]:
    words = text.split(" ")
    middle = len(words) // 2
    return [" ".join(words[:middle]), " ".join(words[middle:])] if len(words) > 1 else [text]
