"""What every feature step shares: its outcome counts, its per-twin lock, a count query."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from twin.database import hold_platform_lock


@dataclass
class StepCounts:
    """Per-document (or per-chunk, for embeddings) outcome counts of one step."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    details: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # short lines for the run's metadata

    def as_metadata(self) -> dict[str, int]:
        return {"new": self.new, "changed": self.changed, "unchanged": self.unchanged,
                "deleted": self.deleted, "skipped": self.skipped, **self.details}


def lock_twin_step(conn: psycopg.Connection, step: str, twin: str) -> None:
    """Serialize concurrent runs of one step for one twin (UI and CLI at once, say)."""
    hold_platform_lock(conn, f"{step}:{twin}")


def count_rows(conn: psycopg.Connection, sql: str, params: object) -> int:
    args = params if isinstance(params, dict) else (params,)
    return int(conn.execute(sql, args).fetchone()[0])
