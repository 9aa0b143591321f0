import ast
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from orchestration.definitions import defs
from orchestration.jobs import build_features_job

REPO = Path(__file__).resolve().parents[1]


def test_definitions_load_with_the_asset_graph_checks_and_job() -> None:
    definitions = defs()
    all_keys = {key.to_user_string() for key in definitions.resolve_all_asset_keys()}
    keys = {"raw/documents", "features/cleaned_documents", "features/chunks", "features/embeddings"}
    assert keys <= all_keys  # other domains (datasets, training, dbt marts) have their own tests
    graph = definitions.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["features", "chunks"])).parent_keys == {dg.AssetKey(["features", "cleaned_documents"])}
    assert graph.get(dg.AssetKey(["features", "embeddings"])).parent_keys == {dg.AssetKey(["features", "chunks"])}
    for key in keys:
        partitions = graph.get(dg.AssetKey.from_user_string(key)).partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "twins"
    checks = {check.name for check in graph.asset_check_keys if check.asset_key.to_user_string() in keys}
    assert checks == {"no_empty_chunks", "unique_chunk_ids", "documents_have_chunks",
                      "chunks_fit_model_window", "embedding_dimension_matches", "pipeline_lag_within_limit"}
    features_job = definitions.resolve_job_def(build_features_job.name)
    assert features_job.partitions_def.name == "twins"
    # the lag check covers every twin: its own job and schedule run it, not each twin's run
    assert "pipeline_lag_within_limit" not in {key.name for key in features_job.asset_layer.asset_graph.asset_check_keys}
    lag_job = definitions.resolve_job_def("check_pipeline_lag_job")
    assert {key.name for key in lag_job.asset_layer.asset_graph.asset_check_keys} == {"pipeline_lag_within_limit"}
    schedule = definitions.resolve_schedule_def("pipeline_lag_schedule")
    assert schedule.job_name == "check_pipeline_lag_job" and schedule.cron_schedule == "*/15 * * * *"


def test_the_workspace_file_validates_with_the_dagster_cli(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_the_domain_packages_never_import_dagster() -> None:
    """twin/, training/ and serving/ are plain Python: Dagster wraps them, never the other way.
    The Pipes child scripts import `dagster_pipes` (the small protocol package), not `dagster`."""
    offenders = []
    for path in [*(REPO / "twin").rglob("*.py"), *(REPO / "training").rglob("*.py"), *(REPO / "serving").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(REPO)}: {name}" for name in names if name.split(".")[0] in {"dagster", "assets", "orchestration", "resources"}]
    assert offenders == []


def test_every_check_has_a_description_and_every_asset_says_what_it_costs() -> None:
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    undescribed = [key.to_user_string() for key in graph.asset_check_keys if not graph.get_check_spec(key).description]
    assert undescribed == []  # dbt tests included
    materializable = [key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable]
    costs = {key.to_user_string(): graph.get(key).tags.get("cost") for key in materializable}
    assert set(costs.values()) == {"cheap", "expensive", "gpu-only"}, costs
    assert costs["models/twin_adapter"] == "expensive" and costs["models/exl2"] == "gpu-only"
    assert costs["features/embeddings"] == "cheap" and costs["marts/twin_content_stats"] == "cheap"
    for key in materializable:
        description = graph.get(key).description or ""
        if costs[key.to_user_string()] != "cheap" and key.path[0] not in ("staging", "marts"):
            assert "Expensive" in description or "CUDA only" in description, key


def test_the_cheap_path_is_a_job_and_the_gpu_asset_is_in_none() -> None:
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    exl2 = dg.AssetKey(["models", "exl2"])
    assert graph.get(exl2).group_name == "gpu"
    jobs = {name: definitions.resolve_job_def(name) for name in ("build_features_job", "train_twin_job", "build_marts_job")}
    for job in jobs.values():
        assert exl2 not in job.asset_layer.selected_asset_keys
    assert jobs["build_features_job"].description.startswith("Cheap")
    assert jobs["build_marts_job"].description.startswith("Cheap")
    assert jobs["train_twin_job"].description.startswith("Expensive")
    features = {key.to_user_string() for key in jobs["build_features_job"].asset_layer.selected_asset_keys}
    assert features == {"raw/documents", "features/cleaned_documents", "features/chunks", "features/embeddings"}
