"""The production topology started for real as separate processes (`twin topology up`): twins
added through twins.yaml, source_change_sensor launching their runs through the daemon and the
QueuedRunCoordinator (at most 2 at once), the lag they leave, a /v1/rag answer through the split
model and RAG services, and everything stopped by PID. Slow (several minutes on 2 cores)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest

from orchestration import topology
from tests.test_feature_pipeline import article, write_jsonl

MAX_RUNS = 2
TWINS = {"Ada Byte": "ada-byte", "Bo Kelp": "bo-kelp", "Cy Reef": "cy-reef"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, base_model: str) -> Iterator[topology.Topology]:
    root = tmp_path_factory.mktemp("topology")
    lines = ["twins:"]
    for name, slug in TWINS.items():
        source = write_jsonl(root / f"{slug}.jsonl", [article(f"https://{slug}.example.com/{i}", f"{name} topic {i}", author=name)
                                                     for i in range(2)])
        lines += [f"  - name: {name}", "    sources:", f"      - jsonl: {source}"]
    (root / "twins.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    saved = {name: os.environ.get(name) for name in ("TWIN_PROFILES", "TWIN_BASE_MODEL")}
    os.environ["TWIN_PROFILES"] = str(root / "twins.yaml")
    os.environ["TWIN_BASE_MODEL"] = base_model  # the model service loads the bundled SmolLM2 folder
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


def test_a_rag_question_is_answered_through_the_split_services(running: topology.Topology) -> None:
    response = httpx.post(f"{running.endpoint('rag')}/v1/rag", timeout=600, json={
        "query": "What does Ada Byte say about urchins?", "twin": "ada-byte", "max_tokens": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "remote" and body["answer"]
    assert body["sources"] and all(source["url"].startswith("https://ada-byte.example.com/") for source in body["sources"])
