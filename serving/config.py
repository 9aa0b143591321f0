"""Serving configuration: the serving view of Settings (twin/settings.py reads the variables and
holds their defaults) plus the rules that use it, such as which key may read which twin."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, fields

from twin.api_keys import ApiKey
from twin.settings import ServingSettings, Settings

ROLES = ("all", "model", "rag")


@dataclass(frozen=True)
class ServingConfig(ServingSettings):
    @classmethod
    def from_settings(cls, settings: Settings) -> ServingConfig:
        return cls(**{item.name: getattr(settings.serving, item.name) for item in fields(ServingSettings)})

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
