"""Serving configuration, read from environment variables (laptop defaults, no keys)."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from twin.errors import TwinError

BACKENDS = ("auto", "exllamav2", "transformers", "remote")
ROLES = ("all", "model", "rag")


@dataclass(frozen=True)
class ApiKey:
    """A key and the twins it may talk to (`None`: every twin)."""

    key: str
    twins: frozenset[str] | None

    @property
    def id(self) -> str:
        """What logs and prompt_logs record instead of the key: a short hash, stable across restarts."""
        return key_id(self.key)


def key_id(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ServingConfig:
    backend: str = "auto"
    model_endpoint: str | None = None  # OpenAI-compatible base URL of a `--role model` service
    model_api_key: str | None = None
    api_keys: tuple[ApiKey, ...] = ()
    max_question_chars: int = 4000
    max_request_bytes: int = 1_000_000  # a request body past this is refused with 413, unread
    max_tokens_limit: int = 1024
    default_max_tokens: int = 256
    generation_timeout_s: float = 120.0
    max_concurrent_generations: int = 2
    max_queued_requests: int = 8
    context_token_budget: int = 1200
    retrieval_k: int = 5
    query_expansion: int = 0  # extra query variants written by the LLM (0: off)
    reranker_model: str | None = None
    model_check_ttl_s: float = 30.0
    max_loaded_models: int = 2
    exl2_bits: float = 4.5
    exl2_draft_model: str | None = None
    exl2_ngram_draft: bool = False

    @classmethod
    def from_env(cls) -> ServingConfig:
        backend = (os.environ.get("TWIN_GENERATION_BACKEND") or "auto").strip().lower()
        if backend not in BACKENDS:
            raise TwinError(
                f"TWIN_GENERATION_BACKEND={backend!r} is not a backend.",
                f"set it to one of {', '.join(BACKENDS)} (or unset it for auto).",
            )
        return cls(
            backend=backend,
            model_endpoint=(os.environ.get("TWIN_MODEL_ENDPOINT") or "").rstrip("/") or None,
            model_api_key=os.environ.get("TWIN_MODEL_API_KEY") or None,
            api_keys=parse_api_keys(os.environ.get("TWIN_API_KEYS") or ""),
            max_question_chars=_int("TWIN_MAX_QUESTION_CHARS", 4000),
            max_request_bytes=_int("TWIN_MAX_REQUEST_BYTES", 1_000_000),
            max_tokens_limit=_int("TWIN_MAX_TOKENS_LIMIT", 1024),
            default_max_tokens=_int("TWIN_DEFAULT_MAX_TOKENS", 256),
            generation_timeout_s=_float("TWIN_GENERATION_TIMEOUT", 120.0),
            max_concurrent_generations=_int("TWIN_MAX_CONCURRENT_GENERATIONS", 2),
            max_queued_requests=_int("TWIN_MAX_QUEUED_REQUESTS", 8),
            context_token_budget=_int("TWIN_CONTEXT_TOKENS", 1200),
            retrieval_k=_int("TWIN_RETRIEVAL_K", 5),
            query_expansion=_int("TWIN_QUERY_EXPANSION", 0),
            reranker_model=os.environ.get("TWIN_RERANKER_MODEL") or None,
            model_check_ttl_s=_float("TWIN_MODEL_CHECK_SECONDS", 30.0),
            max_loaded_models=_int("TWIN_MAX_LOADED_MODELS", 2),
            exl2_bits=_float("TWIN_EXL2_BITS", 4.5),
            exl2_draft_model=os.environ.get("TWIN_EXL2_DRAFT_MODEL") or None,
            exl2_ngram_draft=(os.environ.get("TWIN_EXL2_NGRAM_DRAFT") or "").lower() in ("1", "true", "yes"),
        )

    def find_key(self, key: str | None) -> ApiKey | None:
        """The configured entry for `key` (compared in constant time), or None."""
        if key is None:
            return None
        for entry in self.api_keys:
            if hmac.compare_digest(entry.key.encode(), key.encode()):
                return entry
        return None

    def key_allows(self, key: str | None, twin: str | None) -> int:
        """200 when the key may ask about `twin`, 401 for a missing/unknown key, 403 otherwise.

        `twin=None` only asks whether the key is known; what it may read is `scope_of(key)`.
        """
        if not self.api_keys:
            return 200
        match = self.find_key(key)
        if match is None:
            return 401
        if match.twins is None or twin is None or twin in match.twins:
            return 200
        return 403

    def scope_of(self, key: str | None) -> frozenset[str] | None:
        """The twins a request with `key` may read (None: every twin). Unknown keys read nothing."""
        if not self.api_keys:
            return None
        match = self.find_key(key)
        return frozenset() if match is None else match.twins


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """`key1=twin-a,twin-b;key2=*;key3` -> keys; `*` or no `=` at all means every twin.

    A key with `=` but no twin after it is refused (fail closed: it must not grant every twin).
    """
    keys = []
    for position, entry in enumerate((part.strip() for part in text.split(";")), start=1):
        if not entry:
            continue
        key, equals, twins = entry.partition("=")
        key = key.strip()
        if len(key) < 8:
            raise TwinError(
                f"API key number {position} in TWIN_API_KEYS is shorter than 8 characters.",
                "use long random keys, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`.",
            )
        allowed = {twin.strip() for twin in twins.split(",") if twin.strip()}
        if equals and not allowed:
            raise TwinError(
                f"API key {key_id(key)} (number {position}) in TWIN_API_KEYS has `=` but no twin after it.",
                "name its twins (`KEY=maya-lindqvist,tomas-herrera`), `KEY=*` for every twin, or remove it.",
            )
        keys.append(ApiKey(key, None if not equals or "*" in allowed else frozenset(allowed)))
    return tuple(keys)


def format_api_keys(keys: tuple[ApiKey, ...]) -> str:
    """The TWIN_API_KEYS value for `keys` (the inverse of parse_api_keys)."""
    return ";".join(key.key if key.twins is None else f"{key.key}={','.join(sorted(key.twins))}" for key in keys)


def new_api_key() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise TwinError(f"{name}={value!r} is not a whole number.", f"set {name} to e.g. {default}.") from None


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise TwinError(f"{name}={value!r} is not a number.", f"set {name} to e.g. {default}.") from None
