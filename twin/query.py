"""The question and its filters, shared by every ranking: the query cleaned like the documents,
the author/category/date/scope filters, and those filters as one SQL WHERE clause (so scope is
enforced where the data is read)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

from twin.cleaning import clean_prose
from twin.errors import TwinError

MAX_QUERY_CHARS = 2000  # the model reads ~256 tokens; the keyword leg needs no more either


class OutOfScope(TwinError):
    """The only twin a request can be about is one the caller's API key does not cover (403)."""

    def __init__(self, twin: str) -> None:
        super().__init__(f"This API key is not allowed to use twin {twin!r}.",
                         "ask about a twin your key covers (GET /v1/models lists them).")
        self.twin = twin


@dataclass(frozen=True)
class QueryFilters:
    twin: str | None = None
    category: str | None = None
    published_from: date | None = None  # inclusive
    published_until: date | None = None  # inclusive
    scope: frozenset[str] | None = None  # the twins the caller's key may read (None: every twin)

    def describe(self) -> dict[str, object]:
        """The filters as shown to users and logged (only the ones set)."""
        shown: dict[str, object] = {"twin": self.twin, "category": self.category}
        if self.published_from or self.published_until:
            shown["published"] = [iso_or_none(self.published_from), iso_or_none(self.published_until)]
        if self.scope is not None:
            shown["scope"] = sorted(self.scope)
        return shown



def clean_query(text: str) -> str:
    """The question as the documents were cleaned (markup, emoji, NFKC folding), one line, capped;
    empty when no letter or digit is left (only punctuation or symbols)."""
    cleaned = " ".join(clean_prose(text).split())[:MAX_QUERY_CHARS]
    return cleaned if any(character.isalnum() for character in cleaned) else ""


def scoped_filters(found: QueryFilters, twin: str | None, category: str | None,
                   scope: frozenset[str] | None) -> QueryFilters:
    """A request's filters: its own twin and category, else the ones self-query found, always within
    `scope` (self-query may narrow a key's twins, never widen them)."""
    twin = twin or found.twin
    if scope is not None and twin is not None and twin not in scope:
        raise OutOfScope(twin)
    if scope is not None and not scope:
        raise OutOfScope("any")
    return replace(found, twin=twin, category=category or found.category,
                   scope=None if scope is None or twin is not None else scope)



@dataclass
class Where:
    sql: str
    params: dict[str, object] = field(default_factory=dict)


def where_clause(filters: QueryFilters, model_id: str) -> Where:
    """Every filter as SQL, the same for every ranking: scope is enforced where the data is read."""
    parts, params = ["embedding IS NOT NULL", "embedding_model = %(model)s"], {"model": model_id}
    if filters.twin is not None:
        parts.append("twin = %(twin)s")
        params["twin"] = filters.twin
    if filters.scope is not None:  # a scoped API key reads its own twins only, whatever else matched
        parts.append("twin = ANY(%(scope)s)")
        params["scope"] = sorted(filters.scope)
    if filters.category is not None:
        parts.append("category = %(category)s")
        params["category"] = filters.category
    if filters.published_from is not None:
        parts.append("published_at >= %(published_from)s")
        params["published_from"] = filters.published_from
    if filters.published_until is not None:
        parts.append("published_at <= %(published_until)s")
        params["published_until"] = filters.published_until
    return Where(" AND ".join(parts), params)



def iso_or_none(value: date | None) -> str | None:
    return value.isoformat() if value else None
