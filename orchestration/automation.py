"""Change detection: a sensor that runs only the twins whose sources changed, and a re-crawl schedule."""

from __future__ import annotations

import json

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.partitions import twin_partitions
from orchestration.jobs import build_features_job, check_pipeline_lag_job
from resources import ProfilesResource
from twin.settings import DEFAULT_LAG_CHECK_CRON, DEFAULT_RECRAWL_CRON
from twin.sources.kinds import profile_fingerprint

RAW_DOCUMENTS = dg.AssetKey(["raw", "documents"])



def recorded_fingerprint(instance: dg.DagsterInstance, twin: str) -> str | None:
    """The source fingerprint the last raw/documents materialization of `twin` recorded (from a
    sensor run, the UI or `twin materialize`): what counts as already processed."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_DOCUMENTS, asset_partitions=[twin]), limit=1, ascending=False).records
    if not records:
        return None
    materialization = records[0].event_log_entry.asset_materialization
    value = materialization.metadata.get("source_fingerprint") if materialization else None
    return str(value.value) if value is not None else None


@dg.sensor(
    job=build_features_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Adds a partition per twin in twins.yaml and runs the twins whose sources changed "
                "since they were last imported (by this sensor, the UI or `twin materialize`). "
                "Ships stopped: turn it on in Automation (docs/sources.md).",
)
def source_change_sensor(
    context: dg.SensorEvaluationContext, profiles: ProfilesResource, s3: S3Resource
) -> dg.SensorResult:
    previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = dict(previous)
    run_requests = []
    known = set(context.instance.get_dynamic_partitions(twin_partitions.name))
    twins = profiles.profiles()
    for profile in twins:
        try:
            digest = profile_fingerprint(profile, s3.get_client)
        except Exception as exc:  # an unreachable source must not stop the other twins
            context.log.warning(f"{profile.slug}: cannot fingerprint its sources ({exc}); will retry")
            continue
        processed = previous.get(profile.slug) or recorded_fingerprint(context.instance, profile.slug)
        if digest is None or processed == digest:
            if processed is not None:
                current[profile.slug] = processed
            continue
        current[profile.slug] = digest
        run_requests.append(dg.RunRequest(partition_key=profile.slug, run_key=f"{profile.slug}:{digest}",
                                          tags={"twin/trigger": "source_change"}))
    new_twins = sorted({profile.slug for profile in twins} - known)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[twin_partitions.build_add_request(new_twins)] if new_twins else [],
        cursor=json.dumps(current, sort_keys=True),
    )


def build_recrawl_schedule(cron: str = DEFAULT_RECRAWL_CRON) -> dg.ScheduleDefinition:
    """The periodic re-read of every twin's sources; `cron` comes from TWIN_RECRAWL_CRON."""

    @dg.schedule(
        name="source_recrawl_schedule",
        job=build_features_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-reads every twin's sources (crawls included); a twin with nothing new "
                    "stops at raw/documents and runs nothing downstream.",
    )
    def source_recrawl_schedule(
        context: dg.ScheduleEvaluationContext, profiles: ProfilesResource
    ) -> list[dg.RunRequest]:
        tick = context.scheduled_execution_time.isoformat()
        return [
            dg.RunRequest(
                partition_key=profile.slug,
                run_key=f"{profile.slug}:{tick}",
                run_config={"ops": {"raw__documents": {"config": {"skip_downstream_if_unchanged": True}}}},
                tags={"twin/trigger": "recrawl"},
            )
            for profile in profiles.profiles() if profile.sources
        ]

    return source_recrawl_schedule


def build_continuous_training_sensor(enabled: bool) -> dg.AutomationConditionSensorDefinition:
    """Declarative Automation for the training group only (datasets -> adapter -> eval -> champion),
    in its own sensor so that continuous training can be switched off (in the UI, or with
    TWIN_CONTINUOUS_TRAINING=off) while sources and features keep running."""
    return dg.AutomationConditionSensorDefinition(
        "continuous_training_sensor",
        target=dg.AssetSelection.groups("training"),
        default_status=dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=60,  # ships stopped unless TWIN_CONTINUOUS_TRAINING=on
        description="Changed cleaned documents -> a new dataset version -> training -> evaluation -> promotion.",
    )


def build_lag_check_schedule(cron: str = DEFAULT_LAG_CHECK_CRON) -> dg.ScheduleDefinition:
    """Evaluates the pipeline lag check on `cron` (TWIN_LAG_CHECK_CRON), runs or no runs."""
    return dg.ScheduleDefinition(
        name="pipeline_lag_schedule",
        job=check_pipeline_lag_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Checks that no twin's documents wait in the feature pipeline longer than "
                    "TWIN_LAG_LIMIT_SECONDS (docs/runbook.md#the-pipeline-is-behind).",
    )
