"""What several `twin` commands share: the platform's database and twin-name lookup."""

from __future__ import annotations

from pathlib import Path

import psycopg

from twin.database import Database
from twin.documents import twin_slug
from twin.errors import TwinError
from twin.raw_store import list_twins
from twin.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def platform_database(settings: Settings) -> Database:
    """The configured (or embedded) database, migrated: every command that uses it starts here."""
    database = Database.from_settings(settings)
    database.ensure_schema()
    return database


def known_twin(conn: psycopg.Connection, name: str) -> str:
    """The slug of a twin given by name or slug; a clear error when there is no such twin."""
    twins = [slug for slug, _ in list_twins(conn)]
    if not twins:
        raise TwinError("There are no twins yet.", "import some writing first: twin import PATH")
    slug = twin_slug(name)
    if slug not in twins:
        raise TwinError(f"Unknown twin {name!r}; known twins: {', '.join(twins)}.",
                        "import their writing first (twin import PATH) or pick a known twin.")
    return slug
