"""Self-query: the author, category and date range a question names, found with a spaCy entity
ruler built from the twins table and the category words (no model, no network)."""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from twin.query import MAX_QUERY_CHARS, QueryFilters

CATEGORY_WORDS = {
    "article": ("article", "articles", "essay", "essays", "blog post", "blog posts"),
    "post": ("post", "posts", "update", "updates"),
    "repository": ("repository", "repositories", "repo", "repos", "code", "source code"),
}


@dataclass(frozen=True)
class SelfQueryResult:
    filters: QueryFilters
    notes: tuple[str, ...] = ()  # what was seen but not used, e.g. a name two twins share



class SelfQuery:
    """Finds author and category filters in a question with a spaCy entity ruler built from the
    twins table (names, slugs, unique first and last names) and the category words, and a date
    range in phrases like "in 2023", "since 2021", "last year"."""

    def __init__(self, twins: Sequence[tuple[str, str]]) -> None:
        import spacy

        self.twins = tuple(twins)
        self._nlp = spacy.blank("en")
        ruler = self._nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
        patterns: list[dict[str, str]] = []
        phrases, self._shared = _author_phrases(self.twins)
        for slug, found in phrases.items():
            patterns += [{"label": "AUTHOR", "pattern": phrase, "id": slug} for phrase in found]
        for part in self._shared:
            patterns.append({"label": "SHARED", "pattern": part, "id": part})
        for category, words in CATEGORY_WORDS.items():
            patterns += [{"label": "CATEGORY", "pattern": word, "id": category} for word in words]
        ruler.add_patterns(patterns)  # type: ignore[attr-defined]

    def parse(self, question: str, today: date | None = None) -> SelfQueryResult:
        twin = category = None
        notes: list[str] = []
        for entity in self._nlp(_fold(question)[:MAX_QUERY_CHARS]).ents:
            if entity.label_ == "AUTHOR" and twin is None:
                twin = entity.ent_id_
            elif entity.label_ == "SHARED" and twin is None:
                owners = ", ".join(self._shared[entity.ent_id_])
                notes.append(f"{entity.text!r} names more than one twin ({owners}): no author filter")
            elif entity.label_ == "CATEGORY" and category is None:
                category = entity.ent_id_
        if twin is not None:
            notes = [note for note in notes if not note.startswith("'")]  # a full name settled it
        start, end, note = date_range(question, today or date.today())
        if note:
            notes.append(note)
        return SelfQueryResult(QueryFilters(twin=twin, category=category, published_from=start,
                                            published_until=end), tuple(notes))

    def filters(self, question: str, today: date | None = None) -> QueryFilters:
        return self.parse(question, today).filters


@functools.lru_cache(maxsize=8)
def self_query_for(twins: tuple[tuple[str, str], ...]) -> SelfQuery:
    """One ruler per set of twins (rebuilt when the twins table changes)."""
    return SelfQuery(twins)


def _author_phrases(twins: Sequence[tuple[str, str]]) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """Each twin's phrases (full name, slug, a first or last name no other twin has), and the first
    and last names that several twins share (ambiguous: no filter, a note)."""
    phrases: dict[str, set[str]] = {slug: {_fold(name).lower(), slug.replace("-", " "), slug} for slug, name in twins}
    shared: dict[str, list[str]] = {}
    for position in (0, -1):
        owners: dict[str, set[str]] = {}
        for slug, name in twins:
            parts = _fold(name).lower().split()
            if len(parts) > 1:
                owners.setdefault(parts[position], set()).add(slug)
        for part, slugs in owners.items():
            if len(part) <= 2:
                continue
            if len(slugs) == 1:
                phrases[next(iter(slugs))].add(part)
            else:
                shared[part] = sorted(slugs)
    return phrases, shared


def _fold(text: str) -> str:
    """Accents off ("Tomás" -> "Tomas") so a question typed without them still matches."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
_YEAR = r"(\d{4})"
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("month", re.compile(rf"\b(?:in|during|from|of)\s+{_MONTH}\s+{_YEAR}\b", re.I)),
    ("between", re.compile(rf"\bbetween\s+{_YEAR}\s+and\s+{_YEAR}\b", re.I)),
    ("span", re.compile(rf"\b(?:from\s+)?{_YEAR}\s*(?:-|–|to|until)\s*{_YEAR}\b", re.I)),
    ("since", re.compile(rf"\b(?:since|after)\s+{_YEAR}\b", re.I)),
    ("before", re.compile(rf"\bbefore\s+{_YEAR}\b", re.I)),
    ("year", re.compile(rf"\b(?:in|during|from|of)\s+(?:the\s+year\s+)?{_YEAR}\b", re.I)),
    ("last_years", re.compile(r"\b(?:in\s+)?the\s+(?:last|past)\s+(\d{1,2}|two|three|four|five)\s+years\b", re.I)),
    ("last_year", re.compile(r"\blast\s+year\b", re.I)),
    ("this_year", re.compile(r"\bthis\s+year\b", re.I)),
]
_SMALL = {"two": 2, "three": 3, "four": 4, "five": 5}
_VAGUE = re.compile(r"\b(?:last|past|next|this)\s+(?:decade|century|season|summer|winter|spring|autumn|fall|"
                    r"quarter|week|month|while|time)\b|\bnext\s+year\b|\b(?:recently|lately)\b", re.I)


def date_range(question: str, today: date) -> tuple[date | None, date | None, str | None]:
    """(first day, last day, note) of the period the question names; a phrase that names no
    usable period gives no filter and a note saying so."""
    for kind, pattern in _DATE_PATTERNS:
        match = pattern.search(question)
        if match is None:
            continue
        groups = match.groups()
        if kind == "month":
            month, year = _MONTHS[groups[0].lower()], int(groups[1])
            start, end = date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        elif kind in ("between", "span"):
            start, end = date(int(groups[0]), 1, 1), date(int(groups[1]), 12, 31)
        elif kind == "since":
            start, end = date(int(groups[0]) + (match.group(0).lower().startswith("after")), 1, 1), None
        elif kind == "before":
            start, end = None, date(int(groups[0]) - 1, 12, 31)
        elif kind == "year":
            start, end = date(int(groups[0]), 1, 1), date(int(groups[0]), 12, 31)
        elif kind == "last_years":
            years = int(groups[0]) if groups[0].isdigit() else _SMALL[groups[0].lower()]
            start, end = date(today.year - years, today.month, 1), today
        elif kind == "last_year":
            start, end = date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
        else:
            start, end = date(today.year, 1, 1), today
        for bound in (start, end):
            if bound is not None and not 1900 <= bound.year <= today.year + 1:
                return None, None, f"{match.group(0).strip()!r} is not a period the writing can be from: no date filter"
        if start and end and start > end:
            return None, None, f"{match.group(0).strip()!r} ends before it starts: no date filter"
        return start, end, None
    vague = _VAGUE.search(question)
    if vague:
        return None, None, f"{vague.group(0)!r} is not a date range search understands: no date filter"
    return None, None, None

