"""Running the asset graph from the command line, on the same Dagster instance the UI shows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from tqdm import tqdm

from assets.partitions import twin_partitions
from twin.settings import Settings


def prepare_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at TWIN_HOME/dagster (unless set) so runs and cursors persist there."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home

# the console shows warnings and errors; the full event log stays on the instance (twin ui)
_QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    prepare_dagster_home(settings)
    return dg.DagsterInstance.get()


def register_twins(settings: Settings, twins: list[str]) -> list[str]:
    """Add a partition for each twin not yet known to Dagster; returns the ones added."""
    instance = dagster_instance(settings)
    known = set(instance.get_dynamic_partitions(twin_partitions.name))
    added = [twin for twin in twins if twin not in known]
    if added:
        instance.add_dynamic_partitions(twin_partitions.name, added)
    return added


@dataclass
class TwinRunOutcome:
    """One twin's run of build_features_job: success, run id, metadata per asset, error."""

    twin: str
    success: bool
    run_id: str
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    error: str = ""

    def summary_line(self) -> str:
        if not self.success:
            return f"{self.twin}: FAILED (run {self.run_id})"
        cleaned = self.metadata.get("features/cleaned_documents", {})
        chunked = self.metadata.get("features/chunks", {})
        embedded = self.metadata.get("features/embeddings", {})
        return (f"{self.twin}: documents {cleaned.get('new', 0)} new / {cleaned.get('changed', 0)} changed / "
                f"{cleaned.get('unchanged', 0)} unchanged / {cleaned.get('deleted', 0)} deleted; "
                f"chunks written {chunked.get('chunks_written', 0)}; "
                f"embedded {embedded.get('embedded', 0)} in {embedded.get('seconds', 0)} s "
                f"(run {self.run_id[:8]})")


def materialize_twins(settings: Settings, twins: list[str]) -> list[TwinRunOutcome]:
    """Run build_features_job once per twin partition, in this process, recorded on the instance."""
    from orchestration.definitions import build_definitions

    instance = dagster_instance(settings)
    register_twins(settings, twins)
    job = build_definitions(settings).resolve_job_def("build_features_job")
    outcomes = []
    for twin in tqdm(twins, unit="twin", desc="materializing", disable=None):
        result = job.execute_in_process(partition_key=twin, instance=instance, raise_on_error=False,
                                        run_config=_QUIET_CONSOLE)
        outcome = TwinRunOutcome(twin=twin, success=result.success, run_id=result.run_id)
        for event in result.get_asset_materialization_events():
            materialization = event.event_specific_data.materialization
            outcome.metadata[materialization.asset_key.to_user_string()] = {
                key: value.value for key, value in materialization.metadata.items()
            }
        if not result.success:
            outcome.error = _failure_text(result)
        outcomes.append(outcome)
    return outcomes


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The innermost error message of the first failed step, on one line."""
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            message = error.message.strip()
            prefix = f"{error.cls_name}: " if error.cls_name else ""
            for line in message.splitlines():
                line = line.split(prefix, 1)[1] if prefix and prefix in line else line
                if line.strip():
                    return line.strip()
    return "the run failed; see its logs in the Dagster UI (twin ui)"
