"""MongoDB source: the LLM-Twin data warehouse (`users`, `articles`, `posts`, `repositories`).

The layout is the reference implementations' (LLM Engineer's Handbook, LLM-Twin course): each
item has `content` (a dict of text fields, or {path: file text} for repositories), `platform`,
`link` and `author_full_name` or an `author_id` (`owner_id` for course repositories) into `users`.
The same code reads a `pymongo` database and a `mongomock` one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bson.binary import UUID_SUBTYPE, Binary

from twin.documents import Category, RawDocument, twin_slug
from twin.raw_store import size_problem
from twin.settings import DEFAULT_MAX_DOCUMENT_BYTES
from twin.sources.batch import SourceBatch
from twin.sources.text import parse_date_field

if TYPE_CHECKING:
    from pymongo.database import Database

COLLECTIONS = ("users", "articles", "posts", "repositories")
DATE_FIELDS = ("published_at", "date", "created_at")
# Content keys that describe an item rather than hold its text.
METADATA_KEYS = frozenset({"language", "image", "images", "url", "link", "platform"})


@dataclass(frozen=True)
class _Item:
    """One warehouse item: where it lives (`ref`), its author, and its documents or why it failed."""

    ref: str
    author: str | None
    documents: list[RawDocument]
    problems: list[tuple[str, str]]  # (item, reason)


def read_mongodb(
    database: Database,
    *,
    only_author: str | None = None,
    source: str | None = None,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> list[SourceBatch]:
    """Every article, post and repository file as one batch per twin, named `source`.

    Items without an author go to one extra batch (unless `only_author` is given).
    """
    source = source or f"mongodb://{database.name}"
    collections = {name: _read_collection(database, name) for name in COLLECTIONS}
    return warehouse_batches(collections, ref_base=f"mongodb://{database.name}", source=source,
                             only_author=only_author, max_document_bytes=max_document_bytes)


def warehouse_batches(
    collections: dict[str, list[dict[str, Any]]],
    *,
    ref_base: str,
    source: str,
    only_author: str | None = None,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> list[SourceBatch]:
    """The warehouse mapping, shared by the MongoDB source and the dump importer: items of
    `articles`, `posts` and `repositories` (authors from `users`) as one batch per twin.

    Items without an author go to one extra batch (unless `only_author` is given); each item is
    named `{ref_base}/{collection}/{id}` in rejections.
    """
    wanted = twin_slug(only_author) if only_author is not None else None
    names = _user_names(collections.get("users", []))
    first_seen: dict[tuple[str, str], str] = {}  # one url per twin across every collection
    batches: dict[str, SourceBatch] = {}
    unattributed = SourceBatch(source=source, first_seen=first_seen)
    for name in ("articles", "posts", "repositories"):
        for record in collections.get(name, []):
            item = _parse_item(ref_base, name, record, names, max_document_bytes)
            twin = twin_slug(item.author) if item.author is not None else None
            if wanted is not None and twin != wanted:
                continue
            batch = unattributed if twin is None else batches.setdefault(twin, SourceBatch(source=source, first_seen=first_seen))
            for problem_item, reason in item.problems:
                batch.reject(problem_item, reason)
            for doc in item.documents:
                batch.add(doc, item.ref)
    result = [batches[twin] for twin in sorted(batches)]
    return result + ([unattributed] if unattributed.rejections else [])


def mongodb_fingerprint(database: Database) -> str:
    """Per collection: item count and a hash of every item; changes when anything read changes."""
    return _fingerprint({name: _read_collection(database, name) for name in COLLECTIONS})


def _read_collection(database: Database, name: str) -> list[dict[str, Any]]:
    """All items of a collection, ordered by id so 'first' is stable between reads."""
    return sorted(database[name].find({}), key=lambda record: _id_text(record.get("_id")))


def _fingerprint(collections: dict[str, list[dict[str, Any]]]) -> str:
    parts = []
    for name in COLLECTIONS:
        records = collections[name]
        digests = sorted(hashlib.sha256(_canonical(record)).hexdigest() for record in records)
        combined = hashlib.sha256("".join(digests).encode("ascii")).hexdigest()[:16]
        parts.append(f"{name}={len(records)}:{combined}")
    return ";".join(parts)


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, default=_id_text, ensure_ascii=False).encode("utf-8")


def _user_names(users: list[dict[str, Any]]) -> dict[str, str]:
    """Full name (first + last) by user id, under both `_id` and `id`."""
    names = {}
    for user in users:
        parts = [user.get("first_name"), user.get("last_name")]
        full_name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
        if not full_name:
            continue
        for key in ("_id", "id"):
            if user.get(key) is not None:
                names[_id_text(user[key])] = full_name
    return names


def _parse_item(
    ref_base: str, collection: str, record: dict[str, Any], names: dict[str, str], max_bytes: int
) -> _Item:
    ref = f"{ref_base}/{collection}/{_id_text(record.get('_id', record.get('id')))}"
    author = _author(record, names)
    if author is None:
        owner = record.get("author_id", record.get("owner_id"))
        detail = "no author_id" if owner is None else f"author_id {_id_text(owner)} is not in users"
        return _Item(ref, None, [], [(ref, f"no author: author_full_name is missing and {detail}")])
    try:
        published_at = _published_at(record)
    except ValueError as exc:
        return _Item(ref, author, [], [(ref, str(exc))])
    link = _clean(record.get("link")) if isinstance(record.get("link"), str) else ""
    platform = _clean(record.get("platform")).lower() if isinstance(record.get("platform"), str) else ""
    platform = platform or urlsplit(link).hostname or "mongodb"
    if collection == "repositories":
        return _repository(ref, author, record.get("content"), link, platform, published_at, max_bytes)
    category = Category.ARTICLE if collection == "articles" else Category.POST
    title, text = _title_and_text(record.get("content"))
    if not text.strip():
        return _Item(ref, author, [], [(ref, "content is empty")])
    if problem := size_problem(text, max_bytes):
        return _Item(ref, author, [], [(ref, problem)])
    doc = RawDocument(author=author, category=category, platform=platform, url=link or ref,
                      title=title, content=text, published_at=published_at)
    return _Item(ref, author, [doc], [])


def _repository(
    ref: str, author: str, content: object, link: str, platform: str,
    published_at: date | None, max_bytes: int,
) -> _Item:
    """One document per file; a file that cannot be stored is rejected on its own."""
    if not isinstance(content, dict) or not content:
        return _Item(ref, author, [], [(ref, "content is empty (expected {path: file text})")])
    on_github = urlsplit(link).hostname in ("github.com", "www.github.com")
    documents, problems = [], []
    for path, text in content.items():
        path = _clean(str(path))
        url = f"{link.rstrip('/')}/blob/main/{path}" if on_github else f"{ref}/{path}"
        if not isinstance(text, str):
            problems.append((url, f"file {path} is not text ({type(text).__name__})"))
        elif not text.strip():
            problems.append((url, f"file {path} is empty"))
        elif problem := size_problem(text, max_bytes):
            problems.append((url, problem))
        else:
            documents.append(RawDocument(author=author, category=Category.REPOSITORY, platform=platform,
                                         url=url, title=path, content=_clean(text, strip=False),
                                         published_at=published_at))
    return _Item(ref, author, documents, problems)


def _author(record: dict[str, Any], names: dict[str, str]) -> str | None:
    full_name = record.get("author_full_name")
    if isinstance(full_name, str) and full_name.strip():
        return _clean(full_name)
    owner = record.get("author_id", record.get("owner_id"))
    return names.get(_id_text(owner)) if owner is not None else None


def _title_and_text(content: object) -> tuple[str, str]:
    """(title, text): the `Title` key (any case) and every other text field, blank-line joined."""
    if isinstance(content, str):
        return "", _clean(content, strip=False)
    if not isinstance(content, dict):
        return "", ""
    title = ""
    texts = []
    for key, value in content.items():
        if str(key).lower() == "title" and isinstance(value, str):
            title = _clean(value)
        elif str(key).lower() not in METADATA_KEYS:
            texts.extend(_texts(value))
    return title, "\n\n".join(_clean(text, strip=False).strip() for text in texts)


def _texts(value: object) -> Iterator[str]:
    """The non-blank strings in a value, depth first (nested dicts skip metadata keys)."""
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if str(key).lower() not in METADATA_KEYS:
                yield from _texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner)


def _published_at(record: dict[str, Any]) -> date | None:
    for field in DATE_FIELDS:
        value = record.get(field)
        if isinstance(value, dict) and isinstance(value.get("$date"), str):  # MongoDB extended JSON
            value = value["$date"]
        if (published := parse_date_field(field, value)) is not None:
            return published
    return None


def _clean(text: str, *, strip: bool = True) -> str:
    """PostgreSQL text cannot hold NUL characters."""
    text = text.replace("\x00", "")
    return text.strip() if strip else text


def _id_text(value: object) -> str:
    """An id (str, ObjectId, UUID, UUID binary) as text; also the JSON fallback for BSON values."""
    if isinstance(value, Binary) and value.subtype == UUID_SUBTYPE:
        return str(value.as_uuid())
    if isinstance(value, (uuid.UUID, datetime, date)):
        return str(value)
    return "" if value is None else str(value)
