"""The sentence-transformers model used for chunk token limits and embeddings."""

from __future__ import annotations

import dagster as dg

from twin.chunking import ChunkingPolicy
from twin.embedding import Embedder, load_embedder
from twin.settings import DEFAULT_EMBEDDING_MODEL


class EmbeddingModelResource(dg.ConfigurableResource):
    """A model path or hub id; loaded once per process, on first use."""

    model: str = DEFAULT_EMBEDDING_MODEL

    def embedder(self) -> Embedder:
        return load_embedder(self.model)

    def chunking_policy(self) -> ChunkingPolicy:
        return ChunkingPolicy(max_tokens=self.embedder().max_tokens)
