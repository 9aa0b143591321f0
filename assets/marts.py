"""staging/* and marts/*: the dbt project (dbt_project/) over the platform's tables.

dbt tests become asset checks; the models rebuild on their own after their upstream assets change.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from assets.metadata import CHEAP
from resources import PostgresResource
from twin.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_connection_env, run_dbt
from twin.errors import TwinError

TRAFFIC_REFRESH_CRON = "0 * * * *"  # marts tagged `traffic` also rebuild hourly
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
dbt_project.prepare_if_dev()  # under `dagster dev` (`twin ui`): parsed again on each load, edits show


def prepare_manifest(project: DbtProject = dbt_project) -> Path:
    """dbt's manifest.json: `make` prepares it at build time (`make dbt-manifest`); a fresh
    checkout without one parses here, once (no database, no network). It is written to a
    temporary target, then swapped in: other processes (code server, run workers) may be loading."""
    manifest = Path(project.manifest_path)
    if manifest.exists():
        return manifest
    with tempfile.TemporaryDirectory(prefix="dbt-parse-") as target:
        result = run_dbt(["parse", "--quiet", "--no-partial-parse", "--target-path", target],
                         project_dir=project.project_dir, capture=True)
        if result.returncode != 0:
            raise TwinError(
                f"dbt could not parse {project.project_dir}: {(result.stdout + result.stderr).strip()[-800:]}",
                "fix the dbt project, then run `make dbt-manifest`.",
            )
        manifest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(target) / "manifest.json", manifest)
    return manifest


class TwinDbtTranslator(DagsterDbtTranslator):
    """Keys `[layer, model]` (`staging/stg_chunks`, `marts/twin_content_stats`); eager automation,
    plus an hourly rebuild of the traffic marts."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "model":
            layer = dbt_resource_props["fqn"][1]  # [project, folder, ..., model]
            return dg.AssetKey([layer, dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)  # sources: meta.dagster.asset_key

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "analytics"

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(dbt_resource_props), **CHEAP}

    def get_asset_check_spec(self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str,
                             project: Any) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return dg.AssetCheckSpec(
            name=spec.name, asset=spec.asset_key, additional_deps=spec.additional_deps, blocking=spec.blocking,
            metadata=spec.metadata, automation_condition=spec.automation_condition,
            description=dbt_test_description(manifest["nodes"].get(unique_id, {})))

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        # Every source table exists from the migrations on, so a never-materialized upstream asset
        # (a twin not built yet, no training run yet) is no reason to wait. A model never built is
        # built once (a fresh install builds every staging view and mart in the first run, so no
        # later subset, e.g. the hourly traffic marts, finds its staging view missing).
        condition = (dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
                     | (dg.AutomationCondition.missing().since_last_handled()
                        & ~dg.AutomationCondition.in_progress()))
        if "traffic" in dbt_resource_props.get("tags", []):
            # the serving API writes prompt_logs continuously, without materializations
            condition = condition | (dg.AutomationCondition.cron_tick_passed(TRAFFIC_REFRESH_CRON)
                                     & ~dg.AutomationCondition.in_progress())
        return condition


def dbt_test_description(test: Mapping[str, Any]) -> str:
    """What a dbt generic test asserts, in words (its own description when the YAML gives one)."""
    if test.get("description"):
        return str(test["description"])
    metadata = test.get("test_metadata") or {}
    kwargs = metadata.get("kwargs") or {}
    column = f"`{kwargs.get('column_name') or test.get('column_name') or '?'}`"
    name = metadata.get("name")
    if name == "unique":
        return f"dbt test: no two rows share a value of {column}."
    if name == "not_null":
        return f"dbt test: {column} is never null."
    if name == "accepted_values":
        return f"dbt test: {column} is one of {', '.join(map(str, kwargs.get('values') or []))}."
    if name == "relationships":
        target = str(kwargs.get("to", "")).removeprefix("ref('").removesuffix("')")
        return f"dbt test: every {column} exists in {target}.{kwargs.get('field', '?')}."
    return f"dbt test {name or test.get('name', '')} on {column}."


dbt_translator = TwinDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_duplicate_source_asset_keys=True)
)


@dbt_assets(manifest=prepare_manifest(), project=dbt_project, dagster_dbt_translator=dbt_translator)
def analytics_marts(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, postgres: PostgresResource
) -> Iterator[Any]:
    # This process holds the embedded server (started or joined here) while dbt runs; the database
    # is migrated first, so the analyst role and schemas exist.
    url = postgres.database().url
    with dbt_connection_env(url):  # DbtCliResource copies os.environ when it starts dbt
        invocation = dbt.cli(["build"], context=context)
    try:
        yield from invocation.stream()
    finally:  # dagster-dbt gives every run a target folder of its own; the events hold what matters
        shutil.rmtree(invocation.target_path, ignore_errors=True)


marts_automation_sensor = dg.AutomationConditionSensorDefinition(
    "marts_automation_sensor",
    target=dg.AssetSelection.assets(analytics_marts),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the dbt models (eager) after the assets they read change.",
)


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=str(DBT_EXECUTABLE))
