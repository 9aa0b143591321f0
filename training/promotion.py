"""Evaluation and promotion around the MLflow registry: which models an evaluation compares,
recording its outcome (MLflow metrics and tags, the `evaluations` row), the `beats_champion`
check, and moving the `champion` alias to a challenger that passed (the `promotions` row).

The Dagster assets evaluation/twin_eval and models/champion only call these and report metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg

from training.artifacts import ArtifactStore
from training.dataset_versions import dataset_dir, training_texts
from training.evaluation import EvalReport, EvalSettings, Example, StyleCorpus, generic_prompts, load_examples
from training.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    configure_mlflow,
    local_model_folder,
    model_version_url,
    registered_model_name,
    run_link,
)
from twin.base_model import base_model_location
from twin.checks import Check, CheckSpec
from twin.errors import TwinError
from twin.settings import Settings

BEATS_CHAMPION = CheckSpec(
    "beats_champion",
    "The challenger's held-out perplexity is below the champion's (or the base model's when there is no "
    "champion) and its answers are attributed to the author at least as often.")


@dataclass(frozen=True)
class Contestants:
    """The models one evaluation compares, each as (label, local folder), and the challenger's data."""

    registered_model: str
    version: int  # the challenger's
    run_id: str  # the challenger's MLflow run
    dataset_fingerprint: str  # the dataset version the challenger was trained on
    challenger: tuple[str, str]
    reference: tuple[str, str]  # the champion, or the base model when there is none
    base: tuple[str, str]


@dataclass(frozen=True)
class EvaluationData:
    examples: list[Example]  # the held-out split
    corpus: StyleCorpus  # what authorship attribution learns the voices from


@dataclass(frozen=True)
class RecordedEvaluation:
    figures: dict[str, float]  # the report's numbers, as logged to MLflow
    run_url: str
    model_version_url: str


@dataclass(frozen=True)
class Promotion:
    registered_model: str
    version: int
    previous_version: int | None  # None: the base model was serving
    reason: str
    model_version_url: str

    @property
    def changed(self) -> bool:
        return self.previous_version != self.version


def contestants(settings: Settings, twin: str) -> Contestants:
    """The `challenger` against the `champion` (the base model when there is none, or when the
    champion is the challenger), with the base model as the third."""
    client = configure_mlflow(settings)
    name = registered_model_name(twin)
    challenger = alias_version(client, twin, CHALLENGER)
    if challenger is None:
        raise TwinError(f"{name} has no `challenger` version to evaluate;", "materialize models/twin_adapter first.")
    champion = alias_version(client, twin, CHAMPION)
    base = base_model_location(settings)
    reference = ("base model", base)
    if champion is not None and champion.version != challenger.version:
        reference = (f"champion v{champion.version}",
                     str(local_model_folder(settings, champion.source, name, str(champion.version))))
    return Contestants(
        registered_model=name, version=int(challenger.version), run_id=challenger.run_id,
        dataset_fingerprint=challenger.tags.get("dataset_fingerprint", ""),
        challenger=(f"challenger v{challenger.version}",
                    str(local_model_folder(settings, challenger.source, name, str(challenger.version)))),
        reference=reference, base=("base model", base),
    )


def evaluation_data(conn: psycopg.Connection, store: ArtifactStore, twin: str, models: Contestants,
                    settings: EvalSettings) -> EvaluationData:
    """The challenger's dataset version's held-out split, and the training-side texts of every twin."""
    folder: Path = store.fetch(dataset_dir(twin, "instruct", models.dataset_fingerprint))
    texts = training_texts(conn, folder, twin)
    corpus = StyleCorpus(twin, texts, generic_prompts(load_examples(folder, split="train"), settings.generation_examples))
    return EvaluationData(load_examples(folder), corpus)


def beats_champion(models: Contestants, report: EvalReport) -> Check:
    return BEATS_CHAMPION.result(report.promoted, {"reason": report.reason, "version": models.version},
                                 summary=report.reason)


def record_evaluation(settings: Settings, conn: psycopg.Connection, twin: str, models: Contestants,
                      report: EvalReport) -> RecordedEvaluation:
    """The report on the challenger's MLflow run (metrics, markdown and JSON), the decision as
    tags on its model version, and a row in `evaluations` (what models/champion reads)."""
    client = configure_mlflow(settings)
    name, version = models.registered_model, models.version
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
        client.log_metric(models.run_id, key, value)
    client.log_text(models.run_id, report.markdown(), "evaluation/report.md")
    client.log_dict(models.run_id, report.as_dict(), "evaluation/report.json")
    decision = {"eval_gate": report.reason, "eval_promoted": str(report.promoted).lower(),
                "eval_reference": report.reference.label, "eval_examples": str(report.examples),
                **{key: f"{value:.4f}" for key, value in figures.items()}}
    for key, value in decision.items():  # the decision and its figures, on the version itself
        client.set_model_version_tag(name, str(version), key, value)
    conn.execute(
        """INSERT INTO evaluations (registered_model, version, twin, dataset_fingerprint, reference, examples,
               perplexity, reference_perplexity, base_perplexity, topical_similarity, reference_topical_similarity,
               mean_answer_words, attribution_share, reference_attribution_share, base_attribution_share,
               delta, reference_delta, base_delta, style_measurable, generation_examples, promoted, reason, report)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (name, version, twin, models.dataset_fingerprint, report.reference.label, report.examples,
         report.challenger.perplexity, report.reference.perplexity, report.base.perplexity,
         report.challenger.topical_similarity, report.reference.topical_similarity, report.challenger.mean_answer_words,
         report.challenger.attribution_share, report.reference.attribution_share, report.base.attribution_share,
         report.challenger.delta, report.reference.delta, report.base.delta, report.style_measurable,
         report.generation_examples, report.promoted, report.reason, json.dumps(report.as_dict())),
    )
    return RecordedEvaluation(figures, run_link(settings, models.run_id), model_version_url(settings, name, version))


def promote_champion(settings: Settings, conn: psycopg.Connection, twin: str) -> Promotion:
    """Move `champion` to the version the twin's latest evaluation promoted, recorded in
    `promotions`; nothing moves when that version already is the champion."""
    client = configure_mlflow(settings)
    name = registered_model_name(twin)
    row = conn.execute(
        "SELECT version, promoted, reason FROM evaluations WHERE twin = %s ORDER BY id DESC LIMIT 1", (twin,)
    ).fetchone()
    if row is None or not row[1]:
        raise TwinError(f"The latest evaluation of {name} did not pass the gate; nothing to promote.")
    version, _, reason = row
    previous = alias_version(client, twin, CHAMPION)
    previous_version = int(previous.version) if previous is not None else None
    if previous_version == version:
        return Promotion(name, version, version, "already champion", model_version_url(settings, name, version))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_model_version_tag(name, str(version), "promoted_from",
                                 f"v{previous_version}" if previous_version is not None else "base model")
    conn.execute(
        "INSERT INTO promotions (registered_model, version, twin, previous_version) VALUES (%s, %s, %s, %s)",
        (name, version, twin, previous_version),
    )
    return Promotion(name, version, previous_version, reason, model_version_url(settings, name, version))
