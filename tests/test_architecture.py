"""Thin assets: assets/ reads inputs, calls domain functions and reports metadata. SQL and MLflow
belong to the domain packages (twin/, training/), where they are tested without Dagster."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SQL_START = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|COPY|CREATE|DROP|ALTER|TRUNCATE)\b")


def _asset_modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(REPO)), ast.parse(path.read_text(encoding="utf-8")))
            for path in sorted((REPO / "assets").rglob("*.py"))]


def _text_start(node: ast.AST) -> str | None:
    """The leading literal text of a string constant or an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def sql_strings(tree: ast.Module) -> list[str]:
    parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        text = None if id(node) in parts else _text_start(node)
        if text is not None and SQL_START.match(text):
            found.append(f"line {node.lineno}: {' '.join(text.split())[:60]}")
    return found


def mlflow_uses(tree: ast.Module) -> list[str]:
    """Imports of mlflow, and any name or attribute that mentions it (`configure_mlflow(...)`,
    `mlflow.log_metric`): an MLflow client in an asset body is domain work done in the wrong place."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or "", *(alias.name for alias in node.names)]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        found += [f"line {node.lineno}: {name}" for name in names if "mlflow" in name.lower()]
    return found


def test_the_scanners_find_what_they_look_for() -> None:
    tree = ast.parse('import mlflow\nfrom training.registry import configure_mlflow\n'
                     'conn.execute("SELECT 1")\nconn.execute(f"""\n  WITH x AS (SELECT {n}) DELETE FROM t""")\n'
                     'client = configure_mlflow(settings)\ndescription = "Select the newest with care"\n')
    assert len(sql_strings(tree)) == 2  # the plain and the f-string query, not the description
    assert len(mlflow_uses(tree)) == 3  # the two imports and the call


def test_assets_hold_no_sql() -> None:
    offenders = {path: found for path, tree in _asset_modules() if (found := sql_strings(tree))}
    assert offenders == {}


def test_assets_make_no_mlflow_calls() -> None:
    offenders = {path: found for path, tree in _asset_modules() if (found := mlflow_uses(tree))}
    assert offenders == {}
