"""Context packing for the RAG service: the retrieved chunks (twin/retrieval.py) that fit the
token budget, numbered per source document, become the sources a prompt cites as [n]."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin.retrieval import RetrievedChunk


@dataclass(frozen=True)
class Source:
    """One cited document; `number` is what the answer writes as [n]."""

    number: int
    url: str
    title: str
    author: str
    category: str
    snippet: str
    similarity: float  # the best cosine similarity of its chunks to the question
    chunk_ids: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"number": self.number, "url": self.url, "title": self.title, "author": self.author,
                "category": self.category, "snippet": self.snippet, "similarity": self.similarity}


@dataclass(frozen=True)
class PackedContext:
    text: str
    sources: list[Source]
    chunks: list[RetrievedChunk]  # the chunks that made it into the prompt
    tokens: int


def pack_context(
    chunks: Sequence[RetrievedChunk], *, k: int, token_budget: int, count_tokens: Callable[[str], int]
) -> PackedContext:
    """The best chunks that fit `token_budget`, at most k, numbered per source document."""
    numbers: dict[str, int] = {}
    kept: list[RetrievedChunk] = []
    blocks: list[tuple[int, str]] = []
    used = 0
    for chunk in chunks:
        if len(kept) == k:
            break
        cost = count_tokens(chunk.text) + 16  # the header line of the block
        if used + cost > token_budget:
            continue  # a smaller chunk further down may still fit
        number = numbers.setdefault(chunk.url, len(numbers) + 1)
        kept.append(chunk)
        blocks.append((number, f"[{number}] {chunk.title} ({chunk.category} by {chunk.author})\n{chunk.text}"))
        used += cost
    sources = []
    for url, number in numbers.items():
        mine = [chunk for chunk in kept if chunk.url == url]
        first = mine[0]
        sources.append(Source(number, url, first.title, first.author, first.category, _snippet(first.text),
                              max(chunk.similarity for chunk in mine), tuple(chunk.chunk_id for chunk in mine)))
    blocks.sort(key=lambda block: block[0])  # a source's chunks side by side
    return PackedContext("\n\n".join(text for _, text in blocks), sources, kept, used)


def _snippet(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
