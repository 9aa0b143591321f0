"""The production topology started for real as separate processes (`twin topology up`): twins
added through twins.yaml, source_change_sensor launching their runs through the daemon and the
QueuedRunCoordinator (at most 2 at once), the lag they leave; one twin trained through the queue
(`dagster job launch` of train_twin_job: queued, dequeued by the daemon, Axolotl through Pipes in
the run worker, the version registered in the MLflow server with its Postgres backend store and
its artifacts in moto's S3 bucket, the platform's model_versions row); a /v1/rag answer through
the split model and RAG services, and everything stopped by PID. Slow: 5 min 25 s and 6 min 17 s
on 2 cores (start-up 47-52 s, the four feature runs 103-153 s, the training run 149-154 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import dagster as dg
import httpx
import psycopg
import pytest
from mlflow import MlflowClient

from orchestration import topology
from tests.conftest import SAMPLE_CORPUS
from tests.test_feature_pipeline import article, write_jsonl
from training.registry import CHALLENGER, CHAMPION, registered_model_name

MAX_RUNS = 2
SYNTHETIC = {"Ada Byte": "ada-byte", "Bo Kelp": "bo-kelp", "Cy Reef": "cy-reef"}  # two articles each
# a sample-corpus author (34 documents: enough writing for a dataset): the twin trained through the queue
TRAINED = ("Tomás Herrera", "tomas-herrera")
TWINS = {**SYNTHETIC, TRAINED[0]: TRAINED[1]}
# what `twin train --max-steps 2` runs, and tests/test_training.py's evaluation: the fewest steps and answers
TRAINING_CONFIG = {"ops": {
    "models__twin_adapter": {"config": {"profile": "cpu-demo", "max_steps": 2}},
    "evaluation__twin_eval": {"config": {"max_examples": 12, "generation_examples": 2, "max_new_tokens": 16}}}}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, base_model: str) -> Iterator[topology.Topology]:
    root = tmp_path_factory.mktemp("topology")
    lines = ["twins:"]
    for name, slug in SYNTHETIC.items():
        source = write_jsonl(root / f"{slug}.jsonl", [article(f"https://{slug}.example.com/{i}", f"{name} topic {i}", author=name)
                                                     for i in range(2)])
        lines += [f"  - name: {name}", "    sources:", f"      - jsonl: {source}"]
    lines += [f"  - name: {TRAINED[0]}", "    sources:", f"      - jsonl: {SAMPLE_CORPUS / (TRAINED[1] + '.jsonl')}"]
    (root / "twins.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    saved = {name: os.environ.get(name) for name in ("TWIN_PROFILES", "TWIN_BASE_MODEL")}
    os.environ["TWIN_PROFILES"] = str(root / "twins.yaml")
    os.environ["TWIN_BASE_MODEL"] = base_model  # the model service and training load the bundled SmolLM2 folder
    try:
        started = topology.up(root / "services", max_concurrent_runs=MAX_RUNS)
        yield started
    finally:
        pids = dict(started.pids) if "started" in locals() else {}
        if (root / "services" / topology.STATE_FILE).exists():
            topology.down(root / "services")
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        for name, pid in pids.items():
            assert not topology._alive(pid) or _zombie(pid), f"{name} (pid {pid}) still runs"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False


def instance(started: topology.Topology) -> dg.DagsterInstance:
    os.environ["TWIN_DAGSTER_PG_URL"] = started.url("dagster")
    return dg.DagsterInstance.from_config(str(started.dagster_home))


def test_every_service_is_a_separate_live_process_on_its_port(running: topology.Topology) -> None:
    assert set(running.pids) == set(topology.SERVICES) and len(set(running.pids.values())) == len(topology.SERVICES)
    assert all(topology._alive(pid) for pid in running.pids.values())
    with psycopg.connect(running.url("postgres")) as conn:  # TCP with the password
        assert conn.execute("SELECT inet_server_addr()::text").fetchone()[0].startswith("127.0.0.1")
        assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(running.url("postgres").replace(running.password, "wrong")).close()
    assert httpx.get(f"{running.endpoint('mlflow')}/health", timeout=30).status_code == 200
    assert httpx.get(f"{running.endpoint('rag')}/readyz", timeout=60).json()["status"] == "ready"
    assert httpx.get(f"{running.endpoint('model')}/healthz", timeout=30).json()["role"] == "model"


def test_the_sensor_launches_every_twins_run_through_the_daemon_at_most_two_at_once(
    running: topology.Topology,
) -> None:
    env = running.environment()
    subprocess.run([str(Path(sys.executable).with_name("dagster")), "sensor", "start", "source_change_sensor",
                    "-w", str(running.root / "workspace.yaml")], env=env, check=True, capture_output=True, timeout=300)
    dagster = instance(running)
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:
        runs = dagster.get_runs(filters=dg.RunsFilter(job_name="build_features_job"))
        done = [run for run in runs if run.is_finished]
        if len(done) >= len(TWINS):
            break
        time.sleep(5)
    runs = dagster.get_runs(filters=dg.RunsFilter(job_name="build_features_job"))
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(TWINS.values())
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [(r.run_id, r.status) for r in runs]
    assert all(run.tags.get("dagster/sensor_name") == "source_change_sensor" for run in runs)
    records = [dagster.get_run_record_by_id(run.run_id) for run in runs]
    spans = [(record.start_time, record.end_time) for record in records]
    most_at_once = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert 1 <= most_at_once <= MAX_RUNS
    with psycopg.connect(running.url("twin")) as conn:
        embedded = dict(conn.execute("SELECT twin, count(*) FROM chunks WHERE embedding IS NOT NULL GROUP BY twin"))
    assert set(embedded) == set(TWINS.values())
    metrics = httpx.get(f"{running.endpoint('rag')}/metrics", timeout=120).text
    for slug in TWINS.values():
        assert f'twin_pipeline_waiting_documents{{stage="embed",twin="{slug}"}} 0.0' in metrics


def test_one_twin_is_trained_through_the_queue_and_registered_in_the_mlflow_server(running: topology.Topology) -> None:
    slug = TRAINED[1]
    run_id = str(uuid.uuid4())
    launched = subprocess.run([  # what a user types: submitted to the instance's run coordinator
        str(Path(sys.executable).with_name("dagster")), "job", "launch", "-w", str(running.root / "workspace.yaml"),
        "-j", "train_twin_job", "--run-id", run_id, "--tags", json.dumps({"dagster/partition": slug}),
        "--config-json", json.dumps(TRAINING_CONFIG)], env=running.environment(), capture_output=True, text=True,
        timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    dagster = instance(running)
    deadline = time.monotonic() + 1800
    while not (run := dagster.get_run_by_id(run_id)).is_finished and time.monotonic() < deadline:
        time.sleep(5)
    messages = [event.message for event in dagster.all_logs(run_id) if event.message]
    assert run.status == dg.DagsterRunStatus.SUCCESS, (run.status, messages[-20:])
    # queued by the QueuedRunCoordinator, then dequeued and launched by the daemon (its STARTING event)
    lifecycle = [dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING, dg.DagsterEventType.RUN_START,
                 dg.DagsterEventType.RUN_SUCCESS]
    records = dagster.get_records_for_run(run_id, of_type=set(lifecycle)).records
    assert [record.event_log_entry.dagster_event_type for record in records] == lifecycle

    # the registry named too: else MLflow takes the process-wide one an earlier test's configure_mlflow set
    client = MlflowClient(tracking_uri=running.endpoint("mlflow"), registry_uri=running.endpoint("mlflow"))
    model = registered_model_name(slug)
    # a run that succeeds without training (no dataset, nothing new) says why in its log
    assert [found.version for found in client.search_model_versions(f"name = '{model}'")] == ["1"], messages[-30:]
    version = client.get_model_version(model, "1")
    assert set(version.aliases) == {CHALLENGER, CHAMPION}  # trained, evaluated, promoted
    adapter = dagster.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["models", "twin_adapter"]), asset_partitions=[slug]), limit=1)
    (materialization,) = [record.event_log_entry.asset_materialization for record in adapter.records]
    assert materialization.metadata["mlflow_run_id"].value == version.run_id
    with psycopg.connect(running.url("mlflow")) as conn:  # the server's backend store
        assert conn.execute("SELECT version, run_id FROM model_versions WHERE name = %s", (model,)).fetchall() == [
            (1, version.run_id)]
    # the run's artifacts, through the server's artifact proxy, in the bucket
    artifacts = urlsplit(client.get_run(version.run_id).info.artifact_uri)
    assert artifacts.scheme == "mlflow-artifacts", artifacts
    s3 = boto3.client("s3", endpoint_url=running.endpoint("s3"), aws_access_key_id="topology",
                      aws_secret_access_key="topology", region_name="us-east-1")
    prefix = f"mlflow/{artifacts.path.strip('/')}/"
    objects = {item["Key"].removeprefix(prefix): item["Size"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=topology.BUCKET, Prefix=prefix) for item in page.get("Contents", [])}
    assert {"config/axolotl.yml", "adapter/adapter_config.json", "model/MLmodel"} <= set(objects), sorted(objects)
    weights = [size for key, size in objects.items() if key.startswith("model/") and key.endswith(".safetensors")]
    assert weights and min(weights) > 1_000_000, sorted(objects)
    assert any(key.startswith("evaluation/") for key in objects), sorted(objects)
    with psycopg.connect(running.url("twin")) as conn:  # the platform's own record of the version
        rows = conn.execute("""SELECT registered_model, version, mlflow_run_id, profile, train_steps, model_uri
                               FROM model_versions WHERE twin = %s""", (slug,)).fetchall()
    assert rows == [(model, 1, version.run_id, "cpu-demo", 2, f"models:/{model}/1")]


def test_a_rag_question_is_answered_through_the_split_services(running: topology.Topology) -> None:
    response = httpx.post(f"{running.endpoint('rag')}/v1/rag", timeout=600, json={
        "query": "What does Ada Byte say about urchins?", "twin": "ada-byte", "max_tokens": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "remote" and body["answer"]
    assert body["sources"] and all(source["url"].startswith("https://ada-byte.example.com/") for source in body["sources"])
