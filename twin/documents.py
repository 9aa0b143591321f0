"""The document model shared by every stage: categories, raw documents, twin names and hashes."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class Category(StrEnum):
    """What kind of writing a document is; cleaning and chunking depend on it."""

    ARTICLE = "article"
    POST = "post"
    REPOSITORY = "repository"


@dataclass(frozen=True)
class RawDocument:
    """One piece of an author's writing as it arrived from a source."""

    author: str
    category: Category
    platform: str
    url: str
    title: str
    content: str
    published_at: date | None

    @property
    def twin(self) -> str:
        return twin_slug(self.author)

    @property
    def content_hash(self) -> str:
        return content_hash(self.category, self.platform, self.title, self.content, self.published_at)


def twin_slug(author: str) -> str:
    """The twin's partition key: `Tomás Herrera` -> `tomas-herrera`."""
    ascii_name = unicodedata.normalize("NFKD", author).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if not slug:
        digest = hashlib.sha256(author.encode("utf-8")).hexdigest()[:10]
        slug = f"twin-{digest}"
    return slug


def content_hash(*parts: object) -> str:
    """A stable hash of the given fields (None and '' differ from each other)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(b"\x1e" if part is None else repr(str(part)).encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()
