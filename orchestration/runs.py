"""Running the asset graph from the command line, on the same Dagster instance the UI shows."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from tqdm import tqdm

from assets.partitions import twin_partitions
from twin.settings import Settings

# Telemetry off (offline); every concurrency pool holds one step at a time: the only pool is
# `training`, so at most one fine-tune runs at once however many twins changed. Run monitoring
# (in the daemon `twin ui` starts) enforces a run's `dagster/max_runtime` tag by terminating it.
DAGSTER_YAML = """telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  poll_interval_seconds: 30
"""


def prepare_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at TWIN_HOME/dagster (unless set) so runs and cursors persist there."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home

# The console shows only what the command prints itself (one line per failure, with its fix); the
# full event log, tracebacks included, stays on the instance (twin ui).
_QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
PID_TAG = "twin/pid"  # the process that runs an in-process run: how a dead one is recognised


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    fail_orphaned_runs(instance)
    return instance


def run_tags() -> dict[str, str]:
    return {PID_TAG: f"{os.uname().nodename}:{os.getpid()}"}


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process runs left STARTED by a process that died (kill -9, power loss):
    Dagster's run monitoring watches only runs launched by the daemon. Returns their run ids."""
    failed = []
    here = os.uname().nodename
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                                 dg.DagsterRunStatus.STARTING])):
        host, _, pid = run.tags.get(PID_TAG, "").rpartition(":")
        if host != here or not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, message=f"the process that ran it (pid {pid}) is gone: it was killed "
                                                "or crashed; run the command again to resume")
        failed.append(run.run_id)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        if not self.metadata:
            return (f"{self.twin}: nothing new since the last run; no asset was re-materialized, so nothing "
                    f"downstream (training, dbt) is triggered (run {self.run_id[:8]})")
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
                                        run_config=_QUIET_CONSOLE, tags=run_tags())
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


@dataclass
class TrainingOutcome:
    """One twin's run of train_twin_job. `gate_failed`: the challenger did not beat the champion,
    which is a normal outcome of continuous training, not an error."""

    twin: str
    success: bool
    run_id: str
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    gate_failed: bool = False
    gate_reason: str = ""
    skipped: str = ""  # why no dataset was made (too little text)
    error: str = ""

    def summary_lines(self) -> list[str]:
        dataset = self.metadata.get("datasets/instruct", {})
        adapter = self.metadata.get("models/twin_adapter", {})
        evaluation = self.metadata.get("evaluation/twin_eval", {})
        champion = self.metadata.get("models/champion", {})
        lines = []
        if dataset:
            lines.append(f"dataset {str(dataset.get('fingerprint', ''))[:16]} ({'new' if dataset.get('new_version') else 'unchanged'}): "
                         f"{dataset.get('train_rows')} train / {dataset.get('test_rows')} test examples")
        elif self.success:
            lines.append(f"no dataset: {self.skipped}")
        if adapter:
            lines.append(f"trained {adapter.get('registered_model')} v{adapter.get('version')}: {adapter.get('train_steps')} steps, "
                         f"loss {adapter.get('first_loss', 0):.3f} -> {adapter.get('last_loss', 0):.3f}, "
                         f"{adapter.get('train_seconds')} s, {adapter.get('tokens_per_s')} tokens/s (MLflow run {str(adapter.get('mlflow_run_id'))[:8]})")
        elif dataset and self.success:
            lines.append("nothing to train: this dataset version was already trained with these settings")
        if evaluation:
            lines.append(str(evaluation.get("report", "")))
            if evaluation.get("held_out_prompt"):
                lines.append(f"held-out prompt: {evaluation['held_out_prompt']}")
                lines.append(f"  base model:  {_one_line(evaluation.get('base_answer'))}")
                lines.append(f"  challenger:  {_one_line(evaluation.get('challenger_answer'))}")
        if champion:
            lines.append(f"champion: {champion.get('registered_model')} v{champion.get('champion_version')}")
        elif self.gate_failed:
            lines.append(f"not promoted: {self.gate_reason}")
        return lines


def _one_line(text: object, limit: int = 300) -> str:
    flat = " ".join(str(text or "").split()) or "(empty answer)"
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def train_twin(settings: Settings, twin: str, profile: str = "cpu-demo", max_steps: int | None = None,
               evaluation: dict[str, object] | None = None) -> TrainingOutcome:
    """Run train_twin_job for one twin, in this process, recorded on the instance; `evaluation`
    is evaluation/twin_eval's run config (EvaluationConfig) when not the default."""
    from orchestration.definitions import build_definitions

    instance = dagster_instance(settings)
    register_twins(settings, [twin])
    job = build_definitions(settings).resolve_job_def("train_twin_job")
    # When nothing needs training, the evaluation step is skipped and Dagster notes that its gate
    # "emitted no result"; that is the expected outcome here, reported by summary_lines instead.
    logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)
    # errors only on the console: skips are reported from the run's events below
    run_config = {**_QUIET_CONSOLE,
                  "ops": {"models__twin_adapter": {"config": {"profile": profile, "max_steps": max_steps}}}}
    if evaluation:
        run_config["ops"]["evaluation__twin_eval"] = {"config": evaluation}
    result = job.execute_in_process(partition_key=twin, instance=instance, raise_on_error=False, run_config=run_config,
                                    tags=run_tags())
    outcome = TrainingOutcome(twin=twin, success=result.success, run_id=result.run_id)
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        outcome.metadata[materialization.asset_key.to_user_string()] = {
            key: value.value for key, value in materialization.metadata.items()}
    for event in result.get_asset_observation_events():
        observation = event.event_specific_data.asset_observation
        if "skipped" in observation.metadata:
            outcome.skipped = f"{observation.metadata['skipped'].value} {observation.metadata['fix'].value}"
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name == "beats_champion" and not evaluation.passed:
            outcome.gate_failed = True
            outcome.gate_reason = str(evaluation.metadata.get("reason").value if evaluation.metadata.get("reason") else "")
    failed_steps = {event.step_key for event in result.get_step_failure_events()}
    if not result.success and failed_steps <= {"evaluation__twin_eval"} and outcome.gate_failed:
        outcome.success = True  # only the promotion gate said no
    elif not result.success:
        outcome.error = _failure_text(result)
    return outcome


def _database_gone(message: str) -> bool:
    return any(sign in message for sign in ("server closed the connection", "terminating connection",
                                            "connection is lost", "connection is closed",
                                            "Cannot connect to PostgreSQL", "No such file or directory\n\tIs the server"))


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
                    if _database_gone(message):
                        return (f"{line.strip()} | fix: the database stopped during the run; start it again "
                                "(`twin db-url` starts the embedded one) and re-run: finished work is kept")
                    return line.strip()
    return "the run failed; see its logs in the Dagster UI (twin ui)"


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    job: str
    twin: str | None
    failed_at: float
    error: str
    retried: bool  # the same job and twin succeeded after it


RETRYABLE_JOBS = ("build_features_job", "train_twin_job")


def failed_runs(instance: dg.DagsterInstance, limit: int = 100) -> list[FailedRun]:
    """The most recent failed runs, newest first, each with its first error and whether a later run
    of the same job and twin succeeded."""
    found = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=limit):
        twin = run.tags.get("dagster/partition")
        record = instance.get_run_record_by_id(run.run_id)
        failed_at = record.end_time or record.create_timestamp.timestamp() if record else 0.0
        later = instance.get_runs(filters=dg.RunsFilter(
            job_name=run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS],
            tags={"dagster/partition": twin} if twin else {}, created_after=record.create_timestamp if record else None),
            limit=1)
        found.append(FailedRun(run.run_id, run.job_name, twin, float(failed_at or 0.0), _run_error(instance, run.run_id),
                               retried=bool(later)))
    return found


def _run_error(instance: dg.DagsterInstance, run_id: str) -> str:
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}):
        event = entry.dagster_event
        data = getattr(event, "step_failure_data", None) if event else None
        error = data.error if data is not None else None
        # the first error raised by our code (a TwinError says what to do), not Dagster's wrapper
        while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        if error is not None:
            return " ".join(error.message.split())[:300]
        if entry.message:
            return " ".join(entry.message.split())[:300]
    return "no failure event recorded"
