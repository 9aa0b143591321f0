"""Helpers that turn query results and step outcomes into Dagster metadata."""

from __future__ import annotations

import dagster as dg
import psycopg

from twin.features import StepCounts
from twin.tables import Rows, preview_rows, row_count, table_columns

# What an asset costs to materialize, as a tag the UI shows and selects on (`tag:cost=cheap`).
CHEAP = {"cost": "cheap"}  # seconds per twin on a laptop CPU
EXPENSIVE = {"cost": "expensive"}  # minutes of CPU (training, model generation)
GPU_ONLY = {"cost": "gpu-only"}  # needs CUDA

# GPU work (fine-tuning, EXL2 conversion): one step at a time (the limit is set on the instance,
# see orchestration/runs.py).
TRAINING_POOL = "training"


def preview(rows: Rows) -> dg.MetadataValue:
    """A markdown table of a preview's rows (cells shortened)."""
    lines = ["| " + " | ".join(rows.columns) + " |", "|" + "---|" * len(rows.columns)]
    for row in rows.rows:
        lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


# Columns a table asset does not show in its schema: derived search data, not content.
HIDDEN_COLUMNS = {"search_vector"}


def table_metadata(conn: psycopg.Connection, table: str, twin: str) -> dict[str, object]:
    """`dagster/row_count` (the twin's rows), `dagster/column_schema` (read from the database, with
    the columns' comments) and a `preview` of the first rows, for a table asset partitioned by twin."""
    schema = dg.TableSchema(columns=[
        dg.TableColumn(column.name, column.type, description=column.comment,
                       constraints=dg.TableColumnConstraints(nullable=not column.not_null))
        for column in table_columns(conn, table) if column.name not in HIDDEN_COLUMNS])
    return {"dagster/row_count": dg.MetadataValue.int(row_count(conn, table, twin)),
            "dagster/column_schema": dg.MetadataValue.table_schema(schema),
            "preview": preview(preview_rows(conn, table, twin))}


def step_metadata(counts: StepCounts, seconds: float) -> dict[str, object]:
    return {**counts.as_metadata(), "seconds": round(seconds, 3)}


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 80 else text[:77] + "..."
