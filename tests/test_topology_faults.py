"""Faults of the production topology (issue 15). One topology (`orchestration.topology.up`: every
service a separate process) is started for the module and hurt one service at a time with
`topology.restart`:
 (b) the daemon is killed (SIGKILL) while the sensor's runs execute, and started again;
 (c) Postgres restarts (pg_ctl stop -m fast: every session ended) while a run writes;
 (a) the code server restarts while runs are queued (the daemon, paused with SIGSTOP so that
     nothing is dequeued before, is resumed while the code server is down).
 (d) the MLflow server down when a training ends is tested with the registration function against a
     stopped server's URL (no training needed; last test, no topology).
 (e) the model service down while the RAG service is up is
     tests/test_serving_roles.py::test_rag_role_with_the_model_service_down_says_so: at once, not a
     hang, naming the endpoint and `twin serve --role model`, with status 503.
Slow: 6 min 50 s on 2 cores (start-up 71 s, then six feature runs through the daemon)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest

from orchestration import topology
from orchestration.cli import main
from tests.test_feature_pipeline import article, write_jsonl
from tests.test_topology import _zombie, instance
from training.axolotl_config import training_profile
from training.dataset_versions import DatasetVersion
from training.finetune import TrainingRun, fail_training_run, register_trained_model
from twin.errors import TwinError
from twin.settings import Settings

JOB = "build_features_job"
FIRST = {"Ada Byte": "ada-byte", "Bo Kelp": "bo-kelp"}  # in twins.yaml from the start
LATE = ("Cy Reef", "cy-reef", 8)  # added for the Postgres fault, with more documents
SENSOR = {"repositoryLocationName": "twin", "repositoryName": "__repository__", "sensorName": "source_change_sensor"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, base_model: str) -> Iterator[topology.Topology]:
    root = tmp_path_factory.mktemp("topology-faults")
    for name in FIRST:
        add_twin(root, name, 2)
    saved = {name: os.environ.get(name) for name in ("TWIN_PROFILES", "TWIN_BASE_MODEL")}
    os.environ["TWIN_PROFILES"] = str(root / "twins.yaml")
    os.environ["TWIN_BASE_MODEL"] = base_model
    try:
        started = topology.up(root / "services", max_concurrent_runs=2)
        yield started
    finally:
        if (root / "services" / topology.STATE_FILE).exists():
            pids = topology.Topology.load(root / "services").pids
            topology.down(root / "services")
            for name, pid in pids.items():
                assert not topology._alive(pid) or _zombie(pid), f"{name} (pid {pid}) still runs"
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def add_twin(root: Path, name: str, documents: int) -> str:
    """Write the twin's JSONL source and append it to twins.yaml (other twins' files untouched:
    the sensor fingerprints them). Returns its slug."""
    slug = name.lower().replace(" ", "-")
    source = write_jsonl(root / f"{slug}.jsonl", [
        article(f"https://{slug}.example.com/{i}", f"{name} topic {i:02d}", author=name) for i in range(documents)])
    profiles = root / "twins.yaml"
    lines = profiles.read_text(encoding="utf-8") if profiles.exists() else "twins:\n"
    profiles.write_text(lines + f"  - name: {name}\n    sources:\n      - jsonl: {source}\n", encoding="utf-8")
    return slug


def graphql(started: topology.Topology, query: str, variables: dict[str, object]) -> dict[str, object]:
    """The webserver's GraphQL API: what the Dagster UI itself calls."""
    response = httpx.post(f"{started.endpoint('webserver')}/graphql", json={"query": query, "variables": variables},
                          timeout=300)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def launch(started: topology.Topology, twin: str) -> str:
    """Submit build_features_job for one twin as the UI's Materialize does: queued for the daemon."""
    data = graphql(started, """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""", {"params": {
        "selector": {"repositoryLocationName": "twin", "repositoryName": "__repository__", "jobName": JOB},
        "runConfigData": {}, "executionMetadata": {"tags": [{"key": "dagster/partition", "value": twin}]}}})
    result = data["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def sensor_ticks(started: topology.Topology) -> list[dict[str, object]]:
    data = graphql(started, """query Ticks($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
        __typename ... on Sensor { sensorState { ticks(limit: 20) { timestamp status runIds } } } } }""",
                   {"selector": SENSOR})
    return data["sensorOrError"]["sensorState"]["ticks"]


def wait_for(what: str, condition: object, timeout_s: float, every_s: float = 3) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()  # type: ignore[operator]
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def feature_runs(dagster: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(dagster.get_runs(filters=dg.RunsFilter(job_name=JOB)))


def finished(dagster: dg.DagsterInstance, run_ids: list[str]) -> list[dg.DagsterRun] | None:
    runs = [dagster.get_run_by_id(run_id) for run_id in run_ids]
    return runs if all(run is not None and run.is_finished for run in runs) else None  # type: ignore[return-value]


def chunk_state(started: topology.Topology, twin: str) -> dict[str, tuple[int, object]]:
    """chunk_id -> (document_id, embedded_at) of one twin."""
    with psycopg.connect(started.url("twin")) as conn:
        return {str(row[0]): (int(row[1]), row[2]) for row in conn.execute(
            "SELECT chunk_id, document_id, embedded_at FROM chunks WHERE twin = %s", (twin,))}


def chunks_per_document(state: dict[str, tuple[int, object]]) -> Counter[int]:
    return Counter(document for document, _ in state.values())


def assert_converged(started: topology.Topology, twins: list[str]) -> None:
    """Every twin's documents cleaned, chunked and embedded: nothing waits at any stage."""
    with psycopg.connect(started.url("twin")) as conn:
        for twin in twins:
            raw, cleaned, unchunked, unembedded = conn.execute("""
                SELECT (SELECT count(*) FROM raw_documents WHERE twin = %(t)s),
                       (SELECT count(*) FROM cleaned_documents WHERE twin = %(t)s),
                       (SELECT count(*) FROM cleaned_documents d WHERE twin = %(t)s
                         AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.document_id)),
                       (SELECT count(*) FROM chunks WHERE twin = %(t)s AND embedding IS NULL)""", {"t": twin}).fetchone()
            assert raw > 0 and raw == cleaned and unchunked == 0 and unembedded == 0, (twin, raw, cleaned, unchunked,
                                                                                       unembedded)
    metrics = httpx.get(f"{started.endpoint('rag')}/metrics", timeout=120).text
    for twin in twins:
        for stage in ("clean", "chunk", "embed"):
            assert f'twin_pipeline_waiting_documents{{stage="{stage}",twin="{twin}"}} 0.0' in metrics, (twin, stage)


def test_daemon_killed_mid_run_duplicates_nothing_and_the_next_tick_converges(running: topology.Topology) -> None:
    subprocess.run([str(Path(sys.executable).with_name("dagster")), "sensor", "start", "source_change_sensor",
                    "-w", str(running.root / "workspace.yaml")], env=running.environment(), check=True,
                   capture_output=True, timeout=300)
    dagster = instance(running)
    started_runs = wait_for("both sensor runs started", lambda: (
        runs if len(runs := feature_runs(dagster)) == len(FIRST)
        and all(run.status == dg.DagsterRunStatus.STARTED for run in runs) else None), 600)
    daemon = topology.Topology.load(running.root).pids["daemon"]
    os.killpg(daemon, signal.SIGKILL)
    killed_at = time.time()
    restarted = topology.restart(running.root, "daemon")
    assert restarted.pids["daemon"] != daemon and topology.Topology.load(running.root).pids["daemon"] == restarted.pids["daemon"]
    runs = wait_for("the runs to finish", lambda: finished(dagster, [run.run_id for run in started_runs]), 900)
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [(run.run_id, run.status) for run in runs]
    # the first tick of the restarted daemon reads the same cursor: it requests nothing again
    tick = wait_for("a sensor tick after the restart", lambda: next(
        (tick for tick in sensor_ticks(running) if tick["timestamp"] > killed_at and tick["status"] != "STARTED"), None),
        300)
    assert tick["status"] == "SKIPPED" and not tick["runIds"], tick
    runs = feature_runs(dagster)
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(FIRST.values())  # one run per twin
    assert all(run.tags.get("dagster/sensor_name") == "source_change_sensor" for run in runs)
    assert_converged(running, sorted(FIRST.values()))


# what psycopg says when the server ends a session or is not back yet
CONNECTION_ENDED = re.compile(r"terminating connection|server closed the connection|connection is (closed|lost)"
                              r"|connection (failed|refused)|database is unavailable", re.IGNORECASE)


def step_errors(dagster: dg.DagsterInstance, run_id: str) -> list[str]:
    """The messages of the run's step failures, each with its causes (the event's own message only
    says that the step failed)."""
    texts = []
    for record in dagster.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        error = record.event_log_entry.dagster_event.step_failure_data.error
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return texts


def test_postgres_restart_under_a_run_fails_it_clearly_or_not_at_all_and_a_rerun_converges(
    running: topology.Topology,
) -> None:
    name, slug, count = LATE
    dagster = instance(running)
    before = {run.run_id for run in feature_runs(dagster)}
    assert add_twin(Path(os.environ["TWIN_PROFILES"]).parent, name, count) == slug
    run = wait_for(f"the sensor's run of {slug} to start", lambda: next(
        (run for run in feature_runs(dagster) if run.run_id not in before and run.status == dg.DagsterRunStatus.STARTED),
        None), 600, every_s=1)
    assert run.tags["dagster/partition"] == slug

    def imported() -> bool:  # raw/documents has written: the run is in the middle of its steps
        with psycopg.connect(running.url("twin")) as conn:
            return conn.execute("SELECT count(*) FROM raw_documents WHERE twin = %s", (slug,)).fetchone()[0] == count
    wait_for(f"{slug}'s raw documents", imported, 600, every_s=0.5)
    postgres = topology.Topology.load(running.root).pids["postgres"]
    restarted = topology.restart(running.root, "postgres")
    assert restarted.pids["postgres"] != postgres and restarted.ports["postgres"] == running.ports["postgres"]
    (run,) = wait_for("the run to finish", lambda: finished(dagster, [run.run_id]), 900)
    messages = [event.message for event in dagster.all_logs(run.run_id) if event.message]
    print(f"{slug} run across the Postgres restart: {run.status}", *messages[-15:], sep="\n")
    if run.status == dg.DagsterRunStatus.FAILURE:  # allowed, saying why: the database went away
        errors = step_errors(dagster, run.run_id)
        assert any(CONNECTION_ENDED.search(error) for error in errors), errors
    else:
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    kept = chunk_state(running, slug)
    assert len(set(chunks_per_document(kept).values())) <= 1, chunks_per_document(kept)  # no document half-chunked
    # re-running through the daemon (which outlived the restart) converges and rewrites nothing kept
    rerun_id = launch(running, slug)
    (rerun,) = wait_for("the re-run to finish", lambda: finished(dagster, [rerun_id]), 900)
    assert rerun.status == dg.DagsterRunStatus.SUCCESS, rerun.status
    after = chunk_state(running, slug)
    assert set(kept) <= set(after)
    assert all(after[chunk][1] == embedded for chunk, (_, embedded) in kept.items() if embedded is not None)
    per_document = chunks_per_document(after)
    assert len(per_document) == count and len(set(per_document.values())) == 1, per_document
    assert_converged(running, sorted([*FIRST.values(), slug]))


def test_code_server_restart_while_runs_are_queued_then_they_launch_and_succeed(running: topology.Topology) -> None:
    dagster = instance(running)
    pids = topology.Topology.load(running.root).pids  # the daemon's was replaced by the first fault
    daemon, code_server = pids["daemon"], pids["code-server"]
    os.killpg(daemon, signal.SIGSTOP)  # nothing dequeues: the runs stay queued
    try:
        run_ids = [launch(running, twin) for twin in FIRST.values()]
        assert all(dagster.get_run_by_id(run_id).status == dg.DagsterRunStatus.QUEUED for run_id in run_ids)
        restart = threading.Thread(target=topology.restart, args=(running.root, "code-server"))
        restart.start()
        wait_for("the old code server to stop", lambda: not topology._alive(code_server) or _zombie(code_server), 60, 0.2)
    finally:
        os.killpg(daemon, signal.SIGCONT)  # the daemon tries to dequeue while the code server loads
    restart.join(600)
    assert topology.Topology.load(running.root).pids["code-server"] != code_server
    runs = wait_for("the queued runs to finish", lambda: finished(dagster, run_ids), 900)
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [(run.run_id, run.status) for run in runs]
    messages = [event.message for run_id in run_ids for event in dagster.all_logs(run_id) if event.message]
    assert any("re-submitting the run into the queue" in message for message in messages), \
        "the daemon never met the code server down: the fault was not exercised"


def test_topology_restart_names_a_missing_or_unknown_service_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["topology", "restart", str(tmp_path)]) == 2
    assert "needs the service to restart" in capsys.readouterr().err
    assert main(["topology", "restart", str(tmp_path), "dagit"]) == 2
    err = capsys.readouterr().err
    assert "Unknown topology service 'dagit'" in err and "code-server" in err
    assert main(["topology", "restart", str(tmp_path), "daemon"]) == 2
    assert f"No topology under {tmp_path}" in capsys.readouterr().err


def test_mlflow_down_when_a_training_ends_registers_nothing_and_says_what_to_do(
    conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once instead of MLflow's backoff
    stopped = f"http://127.0.0.1:{topology._free_port()}"  # nothing listens there: a stopped server
    settings = dataclasses.replace(Settings.from_env(home=tmp_path), mlflow_tracking_uri=stopped)
    adapter, merged = tmp_path / "run" / "adapter", tmp_path / "run" / "merged"
    for folder in (adapter, merged):
        folder.mkdir(parents=True)
        (folder / "weights.bin").write_bytes(b"trained")
    dataset = DatasetVersion("ada", "instruct", "f" * 64, "s" * 64, "offline", {}, 2, 1, 16, 2, "unused", tmp_path / "data",
                             False)
    run = TrainingRun("ada", "no-run", training_profile("cpu-demo", 2), "base", dataset, tmp_path / "run" / "axolotl.yml",
                      adapter, merged, {})
    with pytest.raises(TwinError) as raised:
        register_trained_model(settings, conn, run, {"train_steps": 2.0})
    assert stopped in raised.value.message and "not available" in raised.value.message
    assert "Start the MLflow server" in raised.value.fix
    assert conn.execute("SELECT count(*) FROM model_versions").fetchone()[0] == 0  # no half-registered version
    assert (merged / "weights.bin").read_bytes() == b"trained"  # registration itself deletes nothing
    # the asset then ends the run: MLflow being down must not replace the training's own error
    note = fail_training_run(settings, run, "TwinError: MLflow is not available")
    assert "no-run" in note and "RUNNING" in note and "mlflow runs delete" in note
    assert not merged.exists()  # the half-written model of a failed run is not left behind
