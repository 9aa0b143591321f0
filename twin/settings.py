"""Platform configuration, read from environment variables; every value has a laptop default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MAX_DOCUMENT_BYTES = 1_000_000


@dataclass(frozen=True)
class Settings:
    """Where state lives and which models and databases the platform uses."""

    home: Path
    database_url: str | None
    embedding_model: str
    max_document_bytes: int

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TWIN_HOME") or Path.cwd() / ".twin").expanduser().resolve()
        return cls(
            home=home,
            database_url=os.environ.get("DATABASE_URL") or None,
            embedding_model=os.environ.get("TWIN_EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL,
            max_document_bytes=int(
                os.environ.get("TWIN_MAX_DOCUMENT_BYTES") or DEFAULT_MAX_DOCUMENT_BYTES
            ),
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"
