"""models/* and evaluation/*: LoRA fine-tuning through Dagster Pipes, evaluation, promotion.

models/twin_adapter trains on the newest dataset version (unless that version was already
trained with the same settings), registers the merged model in MLflow with alias `challenger`;
evaluation/twin_eval compares it with the champion (or the base model) on held-out documents; its
blocking check `beats_champion` gates models/champion, which moves the `champion` alias.
"""

import time

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.checks import check_specs, selected_checks
from assets.datasets import instruct_dataset
from assets.metadata import CHEAP, EXPENSIVE, TRAINING_POOL
from assets.partitions import twin_partitions
from resources import EmbeddingModelResource, PostgresResource, TrainingResource
from resources.training import TrainingProcessFailed
from training.axolotl_config import training_profile
from training.dataset_versions import find_version, latest_version
from training.evaluation import EvalSettings, GatePolicy, evaluate
from training.finetune import already_trained, fail_training_run, register_trained_model, start_training_run
from training.promotion import (
    BEATS_CHAMPION,
    beats_champion,
    contestants,
    evaluation_data,
    promote_champion,
    record_evaluation,
)
from training.registry import CHALLENGER, CHAMPION, model_version_url, run_link
from twin.base_model import base_model_location
from twin.errors import TwinError
from twin.query import QueryFilters
from twin.retrieval import search

MAX_RUNTIME_TAG = "dagster/max_runtime"


class TrainingConfig(dg.Config):
    profile: str = "cpu-demo"  # "cpu-demo" or "gpu"
    max_steps: int | None = None  # overrides the profile's
    qlora: bool = False


@dg.asset(
    key=["models", "twin_adapter"],
    deps=[instruct_dataset],
    partitions_def=twin_partitions,
    group_name="training",
    kinds={"axolotl", "mlflow"},
    tags=EXPENSIVE,
    pool=TRAINING_POOL,
    output_required=False,
    automation_condition=dg.AutomationCondition.eager(),
    description="LoRA adapter + merged model (Axolotl, through Dagster Pipes), registered in MLflow as "
                "a new version of twin-<name> with alias `challenger`. Expensive: the cpu-demo profile's 24 steps "
                "took 294 s on an idle 2-core CPU (much longer on a busy one), the gpu profile needs a CUDA "
                "GPU; one fine-tune at a time (pool `training`). Skipped when this dataset was already trained.",
)
def twin_adapter(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    postgres: PostgresResource,
    training: TrainingResource,
    s3: S3Resource,
):
    twin = context.partition_key
    settings = training.settings()
    profile = training_profile(config.profile, config.max_steps, config.qlora)
    base_model = base_model_location(settings)
    with postgres.connection() as conn:
        newest = latest_version(conn, twin, "instruct")
        if newest is None:
            context.log.warning(f"{twin} has no dataset version yet; materialize datasets/instruct first.")
            return
        trained = already_trained(conn, twin, newest[0], profile, base_model)
        if trained is not None:
            context.log.info(f"Dataset {newest[0][:16]} was already trained with profile {profile.name} "
                             f"(version {trained}); nothing to train.")
            return
    store = training.artifact_store(s3)
    with postgres.connection() as conn:
        dataset = find_version(conn, store, twin, "instruct", newest[0])
    if dataset is None:
        raise dg.Failure(f"The files of dataset {newest[0][:16]} for {twin} are gone; re-materialize datasets/instruct.")
    run = start_training_run(settings, twin, dataset, profile, base_model)
    context.log.info(f"MLflow run {run.run_id}; Axolotl profile {profile.name}; config {run.config_path}")
    try:
        result = training.launch(context, run)
        metrics = {key: value.value for key, value in (result.metadata or {}).items()
                   if isinstance(value.value, (int, float)) and not isinstance(value.value, bool)}
        with postgres.connection() as conn:
            registered = register_trained_model(settings, conn, run, metrics)
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
        note = fail_training_run(settings, run, _stop_reason(context), status="KILLED")
        if note:
            context.log.error(note.strip())
        raise
    except BaseException as error:
        reason = error.reason if isinstance(error, TrainingProcessFailed) else f"{type(error).__name__}: {error}"
        note = fail_training_run(settings, run, reason)
        raise dg.Failure(f"Training {twin} failed: {reason}{note}", metadata={"mlflow_run_id": run.run_id}) from error
    yield dg.MaterializeResult(
        metadata={
            **(result.metadata or {}),
            "registered_model": registered.name,
            "version": registered.version,
            "alias": CHALLENGER,
            "mlflow_run_id": run.run_id,
            "mlflow_run": dg.MetadataValue.url(run_link(settings, run.run_id)),
            "mlflow_model_version": dg.MetadataValue.url(model_version_url(settings, registered.name, registered.version)),
            "model_uri": f"models:/{registered.name}/{registered.version}",
            "dataset_fingerprint": dataset.fingerprint,
            "profile": profile.name,
            "base_model": base_model,
        },
        data_version=dg.DataVersion(f"{registered.name}/{registered.version}"),
    )


def _stop_reason(context: dg.AssetExecutionContext) -> str:
    """Why a training run was stopped: its `dagster/max_runtime` passed, or someone terminated it."""
    limit = context.run.tags.get(MAX_RUNTIME_TAG)
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = record.start_time if record is not None else None
    if limit and started is not None and time.time() - started >= float(limit):
        return f"stopped: the run passed its {MAX_RUNTIME_TAG} of {limit} s (Dagster run {context.run.run_id})"
    return f"stopped: Dagster run {context.run.run_id} was terminated (Terminate in the UI, Ctrl-C or a run timeout)"


class EvaluationConfig(dg.Config):
    max_examples: int = 24
    generation_examples: int = EvalSettings.generation_examples
    max_new_tokens: int = EvalSettings.max_new_tokens
    gate_on_style: bool = GatePolicy.style  # the promotion policy: attribution must not fall as well
    attribution_tolerance: float = GatePolicy.attribution_tolerance


@dg.asset(
    key=["evaluation", "twin_eval"],
    deps=[twin_adapter],
    partitions_def=twin_partitions,
    group_name="training",
    kinds={"mlflow"},
    tags=EXPENSIVE,
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=check_specs(["evaluation", "twin_eval"], [BEATS_CHAMPION]),
    description="The challenger against the champion (or base model) on the held-out documents: "
                "perplexity, authorship attribution share, Burrows' Delta, answer length, topical similarity. "
                "Table evaluations + MLflow. Expensive: perplexity plus generated answers from three models, "
                "2-3 min on an idle 2-core CPU.",
)
def twin_eval(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    postgres: PostgresResource,
    training: TrainingResource,
    embedding_model: EmbeddingModelResource,
    s3: S3Resource,
) -> dg.MaterializeResult:
    twin = context.partition_key
    settings = training.settings()
    try:
        models = contestants(settings, twin)
    except TwinError as error:
        raise dg.Failure(f"{error.message} {error.fix}".strip()) from error
    eval_settings = EvalSettings(max_examples=config.max_examples, generation_examples=config.generation_examples,
                                 max_new_tokens=config.max_new_tokens)
    with postgres.connection() as conn:
        data = evaluation_data(conn, training.artifact_store(s3), twin, models, eval_settings)
    policy = GatePolicy(style=config.gate_on_style, attribution_tolerance=config.attribution_tolerance)
    embedder = embedding_model.embedder()

    def sources_for(instruction: str) -> list[str]:
        with postgres.connection() as conn:
            return [chunk.text for chunk in search(conn, embedder, instruction, k=3, filters=QueryFilters(twin=twin),
                                                    self_query=False).chunks]

    report = evaluate(models.challenger, models.reference, models.base, data.examples, data.corpus, embedder,
                      eval_settings, policy, sources_for)
    with postgres.connection() as conn:
        recorded = record_evaluation(settings, conn, twin, models, report)
    return dg.MaterializeResult(
        metadata={"report": dg.MetadataValue.md(report.markdown()), "version": models.version,
                  "reference": report.reference.label, "promoted": report.promoted, "reason": report.reason,
                  "style_measurable": report.style_measurable, "style_note": report.style_note,
                  "gate_policy": dg.MetadataValue.json(report.policy),
                  "generation_examples": report.generation_examples,
                  "held_out_prompt": report.prompts[0] if report.prompts else "",
                  "mlflow_run": dg.MetadataValue.url(recorded.run_url),
                  "mlflow_model_version": dg.MetadataValue.url(recorded.model_version_url),
                  "challenger_answer": _first_answer(report.challenger), "base_answer": _first_answer(report.base),
                  **{key: round(value, 4) for key, value in recorded.figures.items()}},
        check_results=selected_checks(context, [beats_champion(models, report)]),
    )


def _first_answer(figures) -> str:
    return figures.answers[0] if figures.answers else ""


@dg.asset(
    key=["models", "champion"],
    deps=[twin_eval],
    partitions_def=twin_partitions,
    group_name="training",
    kinds={"mlflow"},
    tags=CHEAP,
    automation_condition=dg.AutomationCondition.eager(),
    description="Moves the MLflow alias `champion` to the challenger that passed evaluation/twin_eval's gate.",
)
def champion(context: dg.AssetExecutionContext, postgres: PostgresResource, training: TrainingResource) -> dg.MaterializeResult:
    twin = context.partition_key
    try:
        with postgres.connection() as conn:
            promotion = promote_champion(training.settings(), conn, twin)
    except TwinError as error:
        raise dg.Failure(error.message) from error
    name, version = promotion.registered_model, promotion.version
    if not promotion.changed:
        context.log.info(f"{name} v{version} is already the champion.")
        return dg.MaterializeResult(metadata={"registered_model": name, "champion_version": version,
                                              "previous_champion": version, "reason": promotion.reason},
                                    data_version=dg.DataVersion(f"{name}/{version}"))
    context.log.info(f"{name} v{version} is the champion ({promotion.reason}).")
    return dg.MaterializeResult(
        metadata={"registered_model": name, "champion_version": version,
                  "previous_champion": promotion.previous_version, "reason": promotion.reason,
                  "model_uri": f"models:/{name}@{CHAMPION}",
                  "mlflow_model_version": dg.MetadataValue.url(promotion.model_version_url)},
        data_version=dg.DataVersion(f"{name}/{version}"),
    )
