"""Serving API keys (TWIN_API_KEYS): which twins a key may read. Parsed where Settings reads the
variable, and by `twin api-keys`, which prints the variable's next value."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from twin.errors import TwinError


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
    return secrets.token_urlsafe(24)
