"""Faults of the production topology. Here only (d): the MLflow server is down when a training
ends, tested with the registration function against a stopped server's URL (no training needed).
The code-server restart, daemon SIGKILL and Postgres restart faults are not tested yet."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psycopg
import pytest

from orchestration import topology
from training.axolotl_config import training_profile
from training.dataset_versions import DatasetVersion
from training.finetune import TrainingRun, fail_training_run, register_trained_model
from twin.errors import TwinError
from twin.settings import Settings


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
