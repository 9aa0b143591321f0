import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from orchestration.automation import build_recrawl_schedule, source_change_sensor
from resources import ProfilesResource
from tests.conftest import Pipeline
from twin.errors import TwinError
from twin.profiles import load_profiles
from twin.sources.kinds import profile_fingerprint


def post(author: str, url: str, text: str) -> str:
    return json.dumps({"author": author, "category": "post", "platform": "linkedin", "url": url,
                       "content": text, "published_at": "2025-01-01"}) + "\n"


@pytest.fixture
def profiles_file(tmp_path: Path) -> Path:
    (tmp_path / "ada.jsonl").write_text(post("Ada Byte", "https://example.com/a1", "Ship small."))
    (tmp_path / "bea.jsonl").write_text(post("Bea Coral", "https://example.com/b1", "Count fish."))
    path = tmp_path / "twins.yaml"
    path.write_text("twins:\n"
                    "  - name: Ada Byte\n    sources:\n      - jsonl: ada.jsonl\n"
                    "  - name: Bea Coral\n    sources:\n      - jsonl: bea.jsonl\n"
                    "  - name: Cy Crawl\n    sources:\n      - crawl: https://example.com/feed\n")
    return path


def tick(instance: dg.DagsterInstance, profiles_file: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={
        "profiles": ProfilesResource(path=str(profiles_file)), "s3": S3Resource()})
    return source_change_sensor(context)


def test_sensor_adds_partitions_then_runs_only_changed_twins_without_duplicates(profiles_file: Path) -> None:
    with dg.instance_for_test() as instance:
        first = tick(instance, profiles_file, None)
        assert sorted(r.partition_key for r in first.run_requests) == ["ada-byte", "bea-coral"]
        [added] = first.dynamic_partitions_requests
        assert sorted(added.partition_keys) == ["ada-byte", "bea-coral", "cy-crawl"]
        instance.add_dynamic_partitions("twins", list(added.partition_keys))

        quiet = tick(instance, profiles_file, first.cursor)
        assert quiet.run_requests == [] and quiet.dynamic_partitions_requests == []

        with (profiles_file.parent / "bea.jsonl").open("a") as handle:
            handle.write(post("Bea Coral", "https://example.com/b2", "Reefs at dawn."))
        changed = tick(instance, profiles_file, quiet.cursor)
        [request] = changed.run_requests
        assert request.partition_key == "bea-coral" and request.run_key.startswith("bea-coral:")

        after_restart = tick(instance, profiles_file, changed.cursor)
        assert after_restart.run_requests == []
        # a tick whose cursor update was lost asks again with the same run_key, which Dagster dedupes
        replay = tick(instance, profiles_file, quiet.cursor)
        assert [r.run_key for r in replay.run_requests] == [request.run_key]


def test_an_unreachable_source_does_not_stop_the_other_twins(profiles_file: Path) -> None:
    (profiles_file.parent / "ada.jsonl").unlink()
    with dg.instance_for_test() as instance:
        result = tick(instance, profiles_file, None)
        assert [r.partition_key for r in result.run_requests] == ["bea-coral"]
        assert "ada-byte" not in json.loads(result.cursor)


def test_recrawl_schedule_asks_every_twin_with_sources_to_stop_early_if_nothing_changed(profiles_file: Path) -> None:
    schedule = build_recrawl_schedule("0 4 * * 0")
    assert schedule.cron_schedule == "0 4 * * 0"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 22, 4, tzinfo=UTC),
        resources={"profiles": ProfilesResource(path=str(profiles_file))})
    requests = schedule(context)
    assert sorted(r.partition_key for r in requests) == ["ada-byte", "bea-coral", "cy-crawl"]
    for request in requests:
        assert request.run_config["ops"]["raw__documents"]["config"]["skip_downstream_if_unchanged"] is True


def test_a_reread_that_finds_nothing_new_runs_nothing_downstream(pipeline: Pipeline, profiles_file: Path) -> None:
    pipeline.profiles_path = profiles_file
    first = pipeline.run("ada-byte", skip_downstream_if_unchanged=True)
    materialized = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
    assert "features/embeddings" in materialized  # new data goes all the way

    again = pipeline.run("ada-byte", skip_downstream_if_unchanged=True)
    assert again.success
    assert again.get_asset_materialization_events() == []
    skipped = {e.step_key for e in again.all_events if e.event_type_value == "STEP_SKIPPED"}
    assert skipped == {"features__cleaned_documents", "features__chunks", "features__embeddings"}

    with (profiles_file.parent / "ada.jsonl").open("a") as handle:
        handle.write(post("Ada Byte", "https://example.com/a2", "Write the runbook first."))
    third = pipeline.run("ada-byte", skip_downstream_if_unchanged=True)
    materialized = {e.asset_key.to_user_string() for e in third.get_asset_materialization_events()}
    assert "features/embeddings" in materialized


def test_profiles_resolve_paths_and_refuse_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "twins.yaml"
    good.write_text("twins:\n  - name: Tomás Herrera\n    sources:\n      - export: exports/li.zip\n"
                    "        base_url: https://x.substack.com\n")
    [profile] = load_profiles(good)
    assert profile.slug == "tomas-herrera"
    assert profile.sources[0].location == str(tmp_path / "exports" / "li.zip")
    assert profile.sources[0].options == {"base_url": "https://x.substack.com"}
    assert load_profiles(tmp_path / "absent.yaml") == []
    cases = {
        "twins: [\n": "is not valid YAML",
        "people: []\n": "has no `twins:` list",
        "twins:\n  - sources: []\n": "twin #1 has no name",
        "twins:\n  - name: A\n    sources:\n      - jsonl: a\n        git: b\n": "must name exactly one of",
        "twins:\n  - name: A B\n  - name: a-b\n": "appears twice",
    }
    for text, message in cases.items():
        good.write_text(text)
        with pytest.raises(TwinError, match=message):
            load_profiles(good)


def test_the_sensor_ships_stopped_and_counts_runs_of_the_cli_or_ui_as_processed(profiles_file: Path) -> None:
    assert source_change_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    profiles = ProfilesResource(path=str(profiles_file)).profiles()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("twins", ["ada-byte", "bea-coral", "cy-crawl"])
        ada = next(profile for profile in profiles if profile.slug == "ada-byte")
        # what raw/documents records when `twin materialize` (or the UI) imported Ada's sources
        instance.report_runless_asset_event(dg.AssetMaterialization(
            ["raw", "documents"], partition="ada-byte",
            metadata={"source_fingerprint": profile_fingerprint(ada, S3Resource().get_client)}))
        first = tick(instance, profiles_file, None)  # the sensor is turned on for the first time
        assert [r.partition_key for r in first.run_requests] == ["bea-coral"]  # never imported
        assert json.loads(first.cursor)["ada-byte"] == profile_fingerprint(ada, S3Resource().get_client)


def test_a_no_op_features_run_triggers_no_training_and_no_dbt(pipeline: Pipeline, profiles_file: Path) -> None:
    from orchestration.definitions import build_definitions
    from twin.settings import Settings

    definitions = build_definitions(Settings.from_env())
    training = {"datasets/instruct", "models/twin_adapter", "evaluation/twin_eval", "models/champion"}
    traffic = {"marts/traffic_daily", "marts/cited_documents", "marts/unanswered_queries"}  # also hourly

    def requested(result: dg.EvaluateAutomationConditionsResult) -> set[str]:
        keys = definitions.resolve_all_asset_keys()
        return {key.to_user_string() for key in keys if result.get_num_requested(key)} - traffic

    pipeline.profiles_path = profiles_file
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWIN_CONTINUOUS_TRAINING", "on")
        result = dg.evaluate_automation_conditions(defs=definitions, instance=pipeline.instance)
        assert pipeline.run("ada-byte", job_defaults=True).success  # new writing: the whole chain
        result = dg.evaluate_automation_conditions(defs=definitions, instance=pipeline.instance, cursor=result.cursor)
        assert training <= requested(result) and "staging/stg_chunks" in requested(result)
        again = pipeline.run("ada-byte", job_defaults=True)  # what `twin materialize` or a UI click runs
        assert again.success and again.get_asset_materialization_events() == []
        result = dg.evaluate_automation_conditions(defs=definitions, instance=pipeline.instance, cursor=result.cursor)
        assert requested(result) == set()
