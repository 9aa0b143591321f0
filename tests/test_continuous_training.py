"""Continuous training: Declarative Automation requests one chain per twin whose cleaned data
changed, nothing when nothing changed, and one chain (not one per upstream run) after a backfill."""

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.datasets import instruct_dataset, preference_dataset
from assets.features import chunks, cleaned_documents, embeddings
from assets.metadata import TRAINING_POOL
from assets.raw import raw_documents
from assets.training import champion, twin_adapter, twin_eval
from orchestration.automation import build_continuous_training_sensor
from resources import EmbeddingModelResource, PostgresResource, ProfilesResource, TrainingResource
from training.dataset_versions import DATASET_CHECKS

DEFS = dg.Definitions(
    assets=[raw_documents, cleaned_documents, chunks, embeddings, instruct_dataset, preference_dataset,
            twin_adapter, twin_eval, champion],
    resources={"postgres": PostgresResource(twin_home="/unused"), "profiles": ProfilesResource(path="/unused"),
               "s3": S3Resource(), "embedding_model": EmbeddingModelResource(model="unused"),
               "training": TrainingResource(twin_home="/unused")},  # not called: automation only reads events
)
CHAIN = ["datasets/instruct", "models/twin_adapter", "evaluation/twin_eval", "models/champion"]
TRAINING = dg.AssetSelection.groups("training")


def requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, set[str]]:
    keys = [dg.AssetKey.from_user_string(key) for key in [*CHAIN, "datasets/preference"]]
    found = {key.to_user_string(): set(result.get_requested_partitions(key)) for key in keys}
    return {key: partitions for key, partitions in found.items() if partitions}


def cleaned(instance: dg.DagsterInstance, twin: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(["features", "cleaned_documents"], partition=twin))


def test_changed_cleaned_data_requests_exactly_one_chain_and_nothing_otherwise() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("twins", ["ada", "bea"])
        result = dg.evaluate_automation_conditions(defs=DEFS, instance=instance, asset_selection=TRAINING)
        assert result.total_requested == 0  # nothing cleaned yet: nothing to train

        cleaned(instance, "ada")
        result = dg.evaluate_automation_conditions(defs=DEFS, instance=instance, asset_selection=TRAINING, cursor=result.cursor)
        assert requested(result) == {key: {"ada"} for key in CHAIN}  # the preference dataset is on request only
        # the dataset's checks are requested with it (in its run), not left out of it
        assert result.total_requested == len(CHAIN) + len(DATASET_CHECKS)

        result = dg.evaluate_automation_conditions(defs=DEFS, instance=instance, asset_selection=TRAINING, cursor=result.cursor)
        assert result.total_requested == 0  # unchanged since the last tick: no second chain


def test_a_backfill_of_twenty_twins_starts_one_chain_per_twin() -> None:
    twins = [f"twin-{i:02d}" for i in range(20)]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("twins", twins)
        result = dg.evaluate_automation_conditions(defs=DEFS, instance=instance, asset_selection=TRAINING)
        for _ in range(3):  # the backfill re-materialized every twin three times before the tick
            for twin in twins:
                cleaned(instance, twin)
        result = dg.evaluate_automation_conditions(defs=DEFS, instance=instance, asset_selection=TRAINING, cursor=result.cursor)
        assert requested(result) == {key: set(twins) for key in CHAIN}
        assert result.total_requested == 20 * (len(CHAIN) + len(DATASET_CHECKS))


def test_training_runs_one_at_a_time_and_can_be_switched_off_alone() -> None:
    assert twin_adapter.op.pool == TRAINING_POOL
    assert build_continuous_training_sensor(True).default_status == dg.DefaultSensorStatus.RUNNING
    stopped = build_continuous_training_sensor(False)
    assert stopped.default_status == dg.DefaultSensorStatus.STOPPED
    selected = stopped.asset_selection.resolve(DEFS.resolve_asset_graph())
    assert {key.to_user_string() for key in selected} == {*CHAIN, "datasets/preference"}
