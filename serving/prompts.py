"""Prompt templates. The template's messages go through the model's own chat template
(`tokenizer.apply_chat_template`), the format the twin was fine-tuned on."""

from __future__ import annotations

from serving.backends.base import Message
from twin.persona import PERSONA_SYSTEM

TEMPLATE_NAME = "twin-rag-v1"
RAG_SYSTEM = (
    "You are {author}, answering a reader in your own voice. Use only the numbered sources below, "
    "which are things you wrote. Cite each fact with its source number in brackets, like [1]. "
    "If the sources do not answer the question, say so.\n\nSources:\n{context}"
)
PLAIN_SYSTEM = PERSONA_SYSTEM  # the system prompt of the training data
EXPANSION_PROMPT = (
    "Write {n} different short search queries that would find passages answering this question. "
    "One per line, no numbering.\n\nQuestion: {question}"
)


def rag_messages(author: str, context: str, question: str, history: list[Message] | None = None) -> list[Message]:
    system = RAG_SYSTEM.format(author=author, context=context) if context else PLAIN_SYSTEM.format(author=author)
    return [{"role": "system", "content": system}, *(history or []), {"role": "user", "content": question}]


def plain_messages(author: str, messages: list[Message]) -> list[Message]:
    """A chat without retrieval: the twin's persona unless the caller sent its own system message."""
    if messages and messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": PLAIN_SYSTEM.format(author=author)}, *messages]


def expansion_messages(question: str, n: int) -> list[Message]:
    return [{"role": "user", "content": EXPANSION_PROMPT.format(n=n, question=question)}]
