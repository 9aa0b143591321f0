"""datasets/*: versioned instruct and preference datasets made from the cleaned snapshot."""

import os
import warnings

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.checks import check_specs, selected_checks
from assets.features import cleaned_documents
from assets.metadata import CHEAP, EXPENSIVE
from assets.partitions import twin_partitions
from resources import PostgresResource, TrainingResource
from training import preference
from training.dataset_versions import DATASET_CHECKS, MIN_TRAIN_ROWS, NotEnoughData, build_instruct_dataset, check_dataset
from training.instructions import LLMEndpoint, LLMInstructionGenerator, OfflineInstructionGenerator
from twin.base_model import base_model_location


class InstructDatasetConfig(dg.Config):
    generator: str = "offline"  # "offline" (deterministic, no model) or "llm" (OpenAI-compatible endpoint)
    llm_base_url: str = ""  # e.g. http://127.0.0.1:8000/v1 (the platform's own serving API)
    llm_model: str = ""
    llm_api_key_env: str = "TWIN_LLM_API_KEY"  # the name of the variable holding the key, never the key
    llm_timeout_s: float = 60.0
    min_train_rows: int = MIN_TRAIN_ROWS


INSTRUCT_KEY = dg.AssetKey(["datasets", "instruct"])
# Automation requests a check in the same run as its asset (the asset is subsettable, so a run of
# the asset alone would otherwise leave its checks out).
WITH_ITS_ASSET = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.will_be_requested())


def _dataset_check_specs() -> list[dg.AssetCheckSpec]:
    """The checks, partitioned like the asset so that automation can run them in its run (a
    partitioned check spec is a Dagster preview feature: its warning is filtered as Dagster documents)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return check_specs(INSTRUCT_KEY, DATASET_CHECKS, automation_condition=WITH_ITS_ASSET,
                           partitions_def=twin_partitions)


# A multi_asset of one so that its checks, like the asset, may be skipped (a twin with too little text).
@dg.multi_asset(
    name="datasets__instruct",
    specs=[dg.AssetSpec(
        INSTRUCT_KEY, deps=[cleaned_documents], group_name="training", kinds={"parquet", "mlflow"}, skippable=True,
        tags=CHEAP,
        automation_condition=dg.AutomationCondition.eager(),
        description="Instruction → the author's own passage, split by document; parquet in the artifact store, "
                    "one row per version in dataset_versions. Cheap with the offline generator (under a second); "
                    "a new version starts training when continuous training is on.",
    )],
    partitions_def=twin_partitions,
    can_subset=True,
    check_specs=_dataset_check_specs(),
)
def instruct_dataset(
    context: dg.AssetExecutionContext,
    config: InstructDatasetConfig,
    postgres: PostgresResource,
    training: TrainingResource,
    s3: S3Resource,
):
    twin = context.partition_key
    if config.generator == "llm":
        if not config.llm_base_url or not config.llm_model:
            raise dg.Failure(f"generator 'llm' needs llm_base_url and llm_model in the run config (twin {twin}).")
        generator = LLMInstructionGenerator(LLMEndpoint(
            base_url=config.llm_base_url, model=config.llm_model,
            api_key=os.environ.get(config.llm_api_key_env), timeout_s=config.llm_timeout_s))
    else:
        generator = OfflineInstructionGenerator()
    store = training.artifact_store(s3)
    with postgres.connection() as conn:
        try:
            version = build_instruct_dataset(conn, twin, generator, store, min_train_rows=config.min_train_rows)
        except NotEnoughData as skip:
            context.log.warning(f"No dataset for {twin}: {skip.message} {skip.fix}")
            yield dg.AssetObservation(asset_key=INSTRUCT_KEY, partition=twin,
                                      metadata={"skipped": skip.message, "fix": skip.fix})
            return
    checks = check_dataset(version.local_dir, config.min_train_rows)
    yield dg.MaterializeResult(
        asset_key=INSTRUCT_KEY,
        metadata={
            "fingerprint": version.fingerprint,
            "new_version": version.created,
            "uri": version.uri,
            "snapshot_fingerprint": version.snapshot_fingerprint,
            "generator": version.generator,
            "documents": version.documents,
            "test_documents": version.test_documents,
            "train_rows": version.train_rows,
            "test_rows": version.test_rows,
            "failures": len(version.failures),
            "instruction_mix": version.instruction_mix,
            "seconds": round(version.seconds, 2),
            "preview": dg.MetadataValue.md(_preview(version.local_dir)),
            "dagster/row_count": version.train_rows + version.test_rows,
            "dagster/column_schema": _parquet_schema(version.local_dir / "train.parquet"),
        },
        data_version=dg.DataVersion(version.fingerprint[:16]),
        check_results=selected_checks(context, checks, asset_key=INSTRUCT_KEY),
    )


class PreferenceDatasetConfig(dg.Config):
    max_pairs: int = 32  # base-model answers are generated on CPU by default: keep it small
    max_new_tokens: int = 96


@dg.asset(
    key=["datasets", "preference"],
    deps=[INSTRUCT_KEY],
    partitions_def=twin_partitions,
    group_name="training",
    kinds={"parquet"},
    tags=EXPENSIVE,
    output_required=False,
    description="DPO pairs: chosen = the author's passage, rejected = the base model's answer to the "
                "same instruction (train split only). Materialized on request, not automatically. Expensive: the "
                "base model generates one answer per pair: minutes on CPU for the default 32 pairs.",
)
def preference_dataset(
    context: dg.AssetExecutionContext,
    config: PreferenceDatasetConfig,
    postgres: PostgresResource,
    training: TrainingResource,
    s3: S3Resource,
):
    twin = context.partition_key
    settings = training.settings()
    store = training.artifact_store(s3)
    with postgres.connection() as conn:
        try:
            version = preference.build_preference_dataset(
                conn, twin, store, base_model_location(settings), max_pairs=config.max_pairs,
                max_new_tokens=config.max_new_tokens)
        except NotEnoughData as skip:
            context.log.warning(f"No preference dataset for {twin}: {skip.message} {skip.fix}")
            yield dg.AssetObservation(asset_key=context.asset_key, partition=twin,
                                      metadata={"skipped": skip.message, "fix": skip.fix})
            return
    yield dg.MaterializeResult(
        metadata={"fingerprint": version.fingerprint, "new_version": version.created, "uri": version.uri,
                  "pairs": version.train_rows, "seconds": round(version.seconds, 2),
                  "preview": dg.MetadataValue.md(_preview(version.local_dir, ("prompt", "chosen", "rejected")))},
        data_version=dg.DataVersion(version.fingerprint[:16]),
    )


def _parquet_schema(path) -> dg.TableSchema:
    import pyarrow.parquet as pq

    return dg.TableSchema(columns=[dg.TableColumn(field.name, str(field.type)) for field in pq.read_schema(path)])


def _preview(folder, columns=("instruction_kind", "instruction", "output")) -> str:
    import pyarrow.parquet as pq

    rows = pq.read_table(folder / "train.parquet", columns=list(columns)).to_pylist()[:5]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [" ".join(str(row[c]).split()).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(c if len(c) <= 90 else c[:87] + "..." for c in cells) + " |")
    return "\n".join(lines)
