"""Helpers that turn query results and step outcomes into Dagster metadata."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import psycopg

from twin.features import StepCounts

PREVIEW_ROWS = 5

# What an asset costs to materialize, as a tag the UI shows and selects on (`tag:cost=cheap`).
CHEAP = {"cost": "cheap"}  # seconds per twin on a laptop CPU
EXPENSIVE = {"cost": "expensive"}  # minutes of CPU (training, model generation)
GPU_ONLY = {"cost": "gpu-only"}  # needs CUDA

# GPU work (fine-tuning, EXL2 conversion): one step at a time (the limit is set on the instance,
# see orchestration/runs.py).
TRAINING_POOL = "training"


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


# Columns a table asset does not show in its schema: derived search data, not content.
HIDDEN_COLUMNS = {"search_vector"}


def table_metadata(conn: psycopg.Connection, table: str, twin: str, where: str = "") -> dict[str, object]:
    """`dagster/row_count` (the twin's rows) and `dagster/column_schema` (read from the database,
    with the columns' comments) for a table asset partitioned by twin."""
    rows = conn.execute(f"SELECT count(*) FROM {table} WHERE twin = %s {where}", (twin,)).fetchone()[0]
    columns = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, col_description(a.attrelid, a.attnum)
           FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (f"public.{table}",),
    ).fetchall()
    schema = dg.TableSchema(columns=[
        dg.TableColumn(name, kind, description=comment,
                       constraints=dg.TableColumnConstraints(nullable=not not_null))
        for name, kind, not_null, comment in columns if name not in HIDDEN_COLUMNS])
    return {"dagster/row_count": dg.MetadataValue.int(rows), "dagster/column_schema": dg.MetadataValue.table_schema(schema)}


def step_metadata(counts: StepCounts, seconds: float) -> dict[str, object]:
    return {**counts.as_metadata(), "seconds": round(seconds, 3)}


def check_result(name: str, outcome: tuple[bool, dict[str, int]]) -> dg.AssetCheckResult:
    passed, details = outcome
    return dg.AssetCheckResult(check_name=name, passed=passed, metadata=details)


def selected_checks(context: dg.AssetExecutionContext, results: Sequence[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """The results of the checks this run selected: a run of the asset alone (an automation
    request, a click on the asset) gets none, instead of a warning per unselected check."""
    selected = context.selected_asset_check_keys
    keys = {key.name: key for key in selected}
    return [result for result in results if (result.check_name in keys
            and (result.asset_key is None or keys[result.check_name].asset_key == result.asset_key))]


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 80 else text[:77] + "..."
