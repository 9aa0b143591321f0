"""A served answer made grounded: ended at a sentence when generation hit max_tokens, and cited
inline per sentence against the chunks that were in its prompt (`twin.grounding`)."""

from __future__ import annotations

from serving.context import PackedContext
from twin.embedding import Embedder
from twin.grounding import GroundedAnswer, ground, trim_to_sentence


def finished_text(answer: str, cut_off: bool) -> str:
    """The answer as served: ended at its last sentence when generation stopped at max_tokens."""
    return trim_to_sentence(answer) if cut_off else answer.strip()


def cite(answer: str, context: PackedContext, embedder: Embedder) -> GroundedAnswer:
    """Inline [n] citations, n being the number of the source whose chunk was in the prompt."""
    numbers = {chunk_id: source.number for source in context.sources for chunk_id in source.chunk_ids}
    chunks = [(numbers[chunk.chunk_id], chunk.text) for chunk in context.chunks if chunk.chunk_id in numbers]
    return ground(answer, chunks, embedder)
