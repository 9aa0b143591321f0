"""Helpers that turn query results and step outcomes into Dagster metadata."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import psycopg

from twin.features import StepCounts

PREVIEW_ROWS = 5


def preview(conn: psycopg.Connection, sql: str, params: Sequence[object]) -> dg.MetadataValue:
    """A markdown table of the first rows a query returns (cells shortened)."""
    cursor = conn.execute(sql, params)
    columns = [column.name for column in cursor.description or []]
    rows = cursor.fetchmany(PREVIEW_ROWS)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(value) for value in row]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def step_metadata(counts: StepCounts, seconds: float) -> dict[str, object]:
    return {**counts.as_metadata(), "seconds": round(seconds, 3)}


def check_result(name: str, outcome: tuple[bool, dict[str, int]]) -> dg.AssetCheckResult:
    passed, details = outcome
    return dg.AssetCheckResult(check_name=name, passed=passed, metadata=details)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 80 else text[:77] + "..."
