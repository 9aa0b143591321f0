"""models/* and evaluation/*: LoRA fine-tuning through Dagster Pipes, evaluation, promotion.

models/twin_adapter trains on the newest dataset version (unless that version was already
trained with the same settings), registers the merged model in MLflow with alias `challenger`;
evaluation/twin_eval compares it with the champion (or the base model) on held-out documents; its
blocking check `beats_champion` gates models/champion, which moves the `champion` alias.
"""

import json
import time

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.datasets import instruct_dataset
from assets.metadata import CHEAP, EXPENSIVE, TRAINING_POOL, selected_checks
from assets.partitions import twin_partitions
from resources import EmbeddingModelResource, PostgresResource, TrainingResource
from resources.training import TrainingProcessFailed
from training.axolotl_config import training_profile
from training.dataset_versions import find_version, latest_version, training_texts
from training.evaluation import EvalSettings, GatePolicy, StyleCorpus, evaluate, generic_prompts, load_examples
from training.finetune import already_trained, fail_training_run, register_trained_model, start_training_run
from training.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    configure_mlflow,
    local_model_folder,
    model_version_url,
    registered_model_name,
    run_url,
)
from twin.base_model import base_model_location
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
        fail_training_run(settings, run, _stop_reason(context), status="KILLED")
        raise
    except BaseException as error:
        reason = error.reason if isinstance(error, TrainingProcessFailed) else f"{type(error).__name__}: {error}"
        fail_training_run(settings, run, reason)
        raise dg.Failure(f"Training {twin} failed: {reason}", metadata={"mlflow_run_id": run.run_id}) from error
    experiment = configure_mlflow(settings).get_run(run.run_id).info.experiment_id
    yield dg.MaterializeResult(
        metadata={
            **(result.metadata or {}),
            "registered_model": registered.name,
            "version": registered.version,
            "alias": CHALLENGER,
            "mlflow_run_id": run.run_id,
            "mlflow_run": dg.MetadataValue.url(run_url(settings, experiment, run.run_id)),
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
    check_specs=[dg.AssetCheckSpec("beats_champion", asset=["evaluation", "twin_eval"], blocking=True,
                                   description="The challenger's held-out perplexity is below the champion's "
                                               "(or the base model's when there is no champion) and its answers "
                                               "are attributed to the author at least as often.")],
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
    client = configure_mlflow(settings)
    name = registered_model_name(twin)
    challenger = alias_version(client, twin, CHALLENGER)
    if challenger is None:
        raise dg.Failure(f"{name} has no `challenger` version to evaluate; materialize models/twin_adapter first.")
    champion = alias_version(client, twin, CHAMPION)
    base = base_model_location(settings)
    challenger_path = str(local_model_folder(settings, challenger.source, name, str(challenger.version)))
    reference = ("base model", base)
    if champion is not None and champion.version != challenger.version:
        reference = (f"champion v{champion.version}", str(local_model_folder(settings, champion.source, name, str(champion.version))))
    dataset_fingerprint = challenger.tags.get("dataset_fingerprint", "")
    store = training.artifact_store(s3)
    dataset_dir = store.fetch(f"datasets/{twin}/instruct/{dataset_fingerprint[:16]}")
    examples = load_examples(dataset_dir)
    eval_settings = EvalSettings(max_examples=config.max_examples, generation_examples=config.generation_examples,
                                 max_new_tokens=config.max_new_tokens)
    with postgres.connection() as conn:
        texts = training_texts(conn, dataset_dir, twin)
    corpus = StyleCorpus(twin, texts, generic_prompts(load_examples(dataset_dir, split="train"), eval_settings.generation_examples))
    policy = GatePolicy(style=config.gate_on_style, attribution_tolerance=config.attribution_tolerance)
    embedder = embedding_model.embedder()

    def sources_for(instruction: str) -> list[str]:
        with postgres.connection() as conn:
            return [chunk.text for chunk in search(conn, embedder, instruction, k=3, filters=QueryFilters(twin=twin),
                                                    self_query=False).chunks]

    report = evaluate((f"challenger v{challenger.version}", challenger_path), reference, ("base model", base), examples,
                      corpus, embedder, eval_settings, policy, sources_for)
    summary = {
        "eval_perplexity": report.challenger.perplexity, "eval_reference_perplexity": report.reference.perplexity,
        "eval_base_perplexity": report.base.perplexity,
        "eval_attribution_share": report.challenger.attribution_share,
        "eval_reference_attribution_share": report.reference.attribution_share,
        "eval_base_attribution_share": report.base.attribution_share,
        "eval_delta": report.challenger.delta, "eval_base_delta": report.base.delta,
        "eval_topical_similarity": report.challenger.topical_similarity,
        "eval_grounding": report.challenger.grounding, "eval_base_grounding": report.base.grounding,
        "eval_mean_answer_words": report.challenger.mean_answer_words,
    }
    figures = {key: float(value) for key, value in summary.items() if value is not None}
    for key, value in figures.items():
        client.log_metric(challenger.run_id, key, value)
    client.log_text(challenger.run_id, report.markdown(), "evaluation/report.md")
    client.log_dict(challenger.run_id, report.as_dict(), "evaluation/report.json")
    decision = {"eval_gate": report.reason, "eval_promoted": str(report.promoted).lower(),
                "eval_reference": report.reference.label, "eval_examples": str(report.examples),
                **{key: f"{value:.4f}" for key, value in figures.items()}}
    for key, value in decision.items():  # the decision and its figures, on the version itself
        client.set_model_version_tag(name, challenger.version, key, value)
    with postgres.connection() as conn:
        conn.execute(
            """INSERT INTO evaluations (registered_model, version, twin, dataset_fingerprint, reference, examples,
                   perplexity, reference_perplexity, base_perplexity, topical_similarity, reference_topical_similarity,
                   mean_answer_words, attribution_share, reference_attribution_share, base_attribution_share,
                   delta, reference_delta, base_delta, style_measurable, generation_examples, promoted, reason, report)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (name, int(challenger.version), twin, dataset_fingerprint, report.reference.label, report.examples,
             report.challenger.perplexity, report.reference.perplexity, report.base.perplexity,
             report.challenger.topical_similarity, report.reference.topical_similarity, report.challenger.mean_answer_words,
             report.challenger.attribution_share, report.reference.attribution_share, report.base.attribution_share,
             report.challenger.delta, report.reference.delta, report.base.delta, report.style_measurable,
             report.generation_examples, report.promoted, report.reason, json.dumps(report.as_dict())),
        )
    return dg.MaterializeResult(
        metadata={"report": dg.MetadataValue.md(report.markdown()), "version": int(challenger.version),
                  "reference": report.reference.label, "promoted": report.promoted, "reason": report.reason,
                  "style_measurable": report.style_measurable, "style_note": report.style_note,
                  "gate_policy": dg.MetadataValue.json(report.policy),
                  "generation_examples": report.generation_examples,
                  "held_out_prompt": report.prompts[0] if report.prompts else "",
                  "mlflow_run": dg.MetadataValue.url(run_url(settings, client.get_run(challenger.run_id).info.experiment_id,
                                                             challenger.run_id)),
                  "mlflow_model_version": dg.MetadataValue.url(model_version_url(settings, name, challenger.version)),
                  "challenger_answer": _first_answer(report.challenger), "base_answer": _first_answer(report.base),
                  **{key: round(value, 4) for key, value in figures.items()}},
        check_results=selected_checks(context, [dg.AssetCheckResult(
            check_name="beats_champion", passed=report.promoted, severity=dg.AssetCheckSeverity.ERROR,
            description=report.reason, metadata={"reason": report.reason, "version": int(challenger.version)})]),
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
    settings = training.settings()
    client = configure_mlflow(settings)
    name = registered_model_name(twin)
    with postgres.connection() as conn:
        row = conn.execute(
            "SELECT version, promoted, reason FROM evaluations WHERE twin = %s ORDER BY id DESC LIMIT 1", (twin,)
        ).fetchone()
        if row is None or not row[1]:
            raise dg.Failure(f"The latest evaluation of {name} did not pass the gate; nothing to promote.")
        version, _, reason = row
        previous = alias_version(client, twin, CHAMPION)
        if previous is not None and int(previous.version) == version:
            context.log.info(f"{name} v{version} is already the champion.")
            return dg.MaterializeResult(metadata={"registered_model": name, "champion_version": version,
                                                  "previous_champion": version, "reason": "already champion"},
                                        data_version=dg.DataVersion(f"{name}/{version}"))
        client.set_registered_model_alias(name, CHAMPION, str(version))
        client.set_model_version_tag(name, str(version), "promoted_from",
                                     f"v{previous.version}" if previous is not None else "base model")
        conn.execute(
            "INSERT INTO promotions (registered_model, version, twin, previous_version) VALUES (%s, %s, %s, %s)",
            (name, version, twin, int(previous.version) if previous is not None else None),
        )
    context.log.info(f"{name} v{version} is the champion ({reason}).")
    return dg.MaterializeResult(
        metadata={"registered_model": name, "champion_version": version,
                  "previous_champion": int(previous.version) if previous is not None else None, "reason": reason,
                  "model_uri": f"models:/{name}@{CHAMPION}",
                  "mlflow_model_version": dg.MetadataValue.url(model_version_url(settings, name, version))},
        data_version=dg.DataVersion(f"{name}/{version}"),
    )

